"""``git rev-parse HEAD:<dir>`` computed from the files themselves (no git needed).

The GPU machine gets a copy of the working tree without ``.git``; this reproduces git's tree
object hash (blob = sha1("blob <n>\\0" + bytes), tree entries "<mode> <name>\\0<20-byte id>" sorted
git's way), so a results record names exactly the csrc tree it verified. Equal to git's value
when the files are committed unchanged (checked by tests/test_treehash.py).
"""
import hashlib
import os
import stat
import sys


def _obj(kind: str, data: bytes) -> bytes:
    return hashlib.sha1(kind.encode() + b" " + str(len(data)).encode() + b"\0" + data).digest()


def tree_hash(path: str, ignore=("__pycache__",)) -> str:
    def tree(p: str) -> bytes:
        entries = []
        for name in os.listdir(p):
            if name in ignore or name.endswith((".pyc", ".o", ".so")):
                continue
            full = os.path.join(p, name)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                sub = tree(full)
                if sub is None:
                    continue  # git does not store empty folders
                entries.append((name + "/", b"40000", name, sub))
            elif stat.S_ISLNK(st.st_mode):
                entries.append((name, b"120000", name, _obj("blob", os.readlink(full).encode())))
            else:
                mode = b"100755" if st.st_mode & stat.S_IXUSR else b"100644"
                with open(full, "rb") as f:
                    entries.append((name, mode, name, _obj("blob", f.read())))
        if not entries:
            return None
        entries.sort(key=lambda e: e[0].encode())
        data = b"".join(mode + b" " + name.encode() + b"\0" + digest for _, mode, name, digest in entries)
        return _obj("tree", data)

    digest = tree(path)
    return digest.hex() if digest else ""


if __name__ == "__main__":
    print(tree_hash(sys.argv[1] if len(sys.argv) > 1 else "csrc"))
