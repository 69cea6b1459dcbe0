// KeywordStruct<T>: exposes a plain C++ parameter struct to Python as a class with named fields
// that is constructed by keyword only (bindings.cpp: IgemmCall).
#pragma once

#include <pybind11/pybind11.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

namespace fastflow {

// A pybind11::class_ of a plain struct whose instances Python builds by keyword only, every field named
// (a missing or unknown name raises TypeError; a value of the wrong type too, from the field's
// setter). module_local: fastflow._C and fastflow._simt each register their own class.
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
