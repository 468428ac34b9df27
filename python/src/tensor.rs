//! `torch.Tensor` <-> `tch::Tensor` without copies (src/tensors.cpp): the
//! same storage on both sides, libtorch's own handles.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi::PyObject;
use pyo3::prelude::*;

unsafe extern "C" {
    fn furcate_tensor_check(obj: *mut PyObject) -> std::os::raw::c_int;
    fn furcate_tensor_unpack(obj: *mut PyObject) -> *mut torch_sys::C_tensor;
    fn furcate_tensor_wrap(t: *const torch_sys::C_tensor) -> *mut PyObject;
}

/// A tensor crossing between Python and Rust: taken from a `torch.Tensor`
/// argument, or returned as one, sharing its storage.
pub struct PyTensor(pub tch::Tensor);

impl<'py> FromPyObject<'py> for PyTensor {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        // SAFETY: `ob` is a live Python object and the GIL is held.
        if unsafe { furcate_tensor_check(ob.as_ptr()) } == 0 {
            return Err(PyTypeError::new_err(format!("expected a torch.Tensor, got {}", ob.get_type())));
        }
        // SAFETY: `ob` is a torch.Tensor; the new handle is owned by the tch::Tensor.
        let ptr = unsafe { furcate_tensor_unpack(ob.as_ptr()) };
        if ptr.is_null() {
            return Err(PyTypeError::new_err("could not read the torch.Tensor"));
        }
        Ok(PyTensor(unsafe { tch::Tensor::from_ptr(ptr) }))
    }
}

impl<'py> IntoPyObject<'py> for PyTensor {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: the handle is valid while `self` lives; the wrapper holds its own reference
        // to the tensor, and the function returns a new (owned) reference, or null on error.
        let obj = unsafe { furcate_tensor_wrap(self.0.as_ptr()) };
        if obj.is_null() {
            return Err(PyErr::take(py).unwrap_or_else(|| PyTypeError::new_err("could not wrap the tensor")));
        }
        Ok(unsafe { Bound::from_owned_ptr(py, obj) })
    }
}
