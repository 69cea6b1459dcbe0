// KeywordStruct<T>: exposes a plain C++ parameter struct to Python as a class with named fields
// that is constructed by keyword only (IgemmCall and the params struct of every other op).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/common.h"

namespace fastflow {

// A pybind11::class_ of a plain struct whose instances Python builds by keyword only, every field named
// (a missing or unknown name raises TypeError; a value of the wrong type too, from the field's
// setter). module_local: fastflow._C and fastflow._simt each register their own class.
//
// Field kinds: field() a plain member (int, float, bool); pointer() a data pointer, an int on the
// Python side (tensor.data_ptr()); dtype() a DType, the int code of DTYPE_CODES (an unknown code
// raises ValueError); strides() an int64_t[N] array, a sequence of exactly N ints (ValueError
// otherwise). The Python name may differ from the member's (`in` is a Python keyword).
template <typename T>
class KeywordStruct {
 public:
  KeywordStruct(pybind11::module_& m, const char* name, const char* doc)
      : cls_(m, name, doc, pybind11::module_local()),
        name_(name),
        fields_(std::make_shared<std::vector<std::string>>()) {}
  template <typename F>
  KeywordStruct& field(const char* name, F T::*member, const char* doc) {
    cls_.def_readwrite(name, member, doc);
    fields_->push_back(name);
    return *this;
  }
  template <typename P>
  KeywordStruct& pointer(const char* name, P* T::*member, const char* doc) {
    cls_.def_property(
        name, [member](const T& t) { return reinterpret_cast<uintptr_t>(t.*member); },
        [member](T& t, uintptr_t v) { t.*member = reinterpret_cast<P*>(v); }, doc);
    fields_->push_back(name);
    return *this;
  }
  KeywordStruct& dtype(const char* name, DType T::*member, const char* doc) {
    const std::string cls = name_;
    cls_.def_property(
        name, [member](const T& t) { return int(t.*member); },
        [member, cls](T& t, int code) { t.*member = to_dtype(code, cls.c_str()); }, doc);
    fields_->push_back(name);
    return *this;
  }
  template <size_t N>
  KeywordStruct& strides(const char* name, int64_t (T::*member)[N], const char* doc) {
    const std::string cls = name_, field = name;
    cls_.def_property(
        name, [member](const T& t) { return std::vector<int64_t>(t.*member, t.*member + N); },
        [member, cls, field](T& t, const std::vector<int64_t>& v) {
          FF_CHECK(v.size() == N, cls.c_str(), field, " needs ", N, " strides, got ", v.size());
          std::copy(v.begin(), v.end(), t.*member);
        },
        doc);
    fields_->push_back(name);
    return *this;
  }
  void done() {
    auto fields = fields_;
    std::string cls = name_;
    cls_.def(pybind11::init([fields, cls](const pybind11::kwargs& kw) {
      for (const auto& f : *fields)
        if (!kw.contains(f)) throw pybind11::type_error("fastflow." + cls + ": missing field " + f);
      pybind11::object obj = pybind11::cast(T{});
      for (const auto& item : kw) {
        const std::string key = pybind11::str(item.first);
        if (std::find(fields->begin(), fields->end(), key) == fields->end())
          throw pybind11::type_error("fastflow." + cls + ": unknown field " + key);
        pybind11::setattr(obj, item.first, item.second);
      }
      return obj.cast<T>();
    }));
    cls_.def("__repr__", [fields, cls](const pybind11::object& self) {
      std::string r = cls + "(";
      for (size_t i = 0; i < fields->size(); ++i)
        r += (i ? ", " : "") + (*fields)[i] + "=" + std::string(pybind11::repr(self.attr((*fields)[i].c_str())));
      return r + ")";
    });
  }

 private:
  pybind11::class_<T> cls_;
  std::string name_;
  std::shared_ptr<std::vector<std::string>> fields_;
};

}  // namespace fastflow
