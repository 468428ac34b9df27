// torch.Tensor <-> tch::Tensor without copies, through libtorch_python (the
// one `import torch` loaded: the extension links it, never a copy of its
// own). A tch::Tensor owns a heap-allocated at::Tensor (torch-sys's
// `C_tensor`), so unpacking makes a new at::Tensor handle sharing the Python
// tensor's storage, and wrapping hands libtorch's handle to Python.
#include <torch/csrc/autograd/python_variable.h>

extern "C" {

// 1 when `obj` is a torch.Tensor (or a subclass), else 0.
int furcate_tensor_check(PyObject* obj) {
  try {
    return THPVariable_Check(obj) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

// A new at::Tensor handle on the tensor `obj` (same storage), or null.
void* furcate_tensor_unpack(PyObject* obj) {
  try {
    return new at::Tensor(THPVariable_Unpack(obj));
  } catch (...) {
    return nullptr;
  }
}

// A new reference to the torch.Tensor of the at::Tensor `t` (same storage), or null.
PyObject* furcate_tensor_wrap(const void* t) {
  try {
    return THPVariable_Wrap(*static_cast<const at::Tensor*>(t));
  } catch (...) {
    return nullptr;
  }
}

}  // extern "C"
