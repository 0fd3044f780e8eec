// cppimport
/*
<%
# cppimport runs this block when it (re)builds the module, never on import. Every path and
# flag is read from the torch installed in this Python environment at build time (see
# detr_deploy/native/cpp_build.py: torch_build_info), so the repository holds no absolute path.
from detr_deploy.native.cpp_build import torch_build_info
torch_info = torch_build_info()
setup_pybind11(cfg)  # pybind11's headers; also *prepends* -std=c++11 -fvisibility=hidden
cfg["extra_compile_args"] += [
    "-std=c++%d" % torch_info["cxx_standard"],  # later on the command line, so it wins: torch needs C++20
    "-D_GLIBCXX_USE_CXX11_ABI=%d" % torch_info["cxx11_abi"],  # must match the ABI libtorch was built with
    "-g0",  # Python's CFLAGS add -g: a 10 MB module and a build twice as slow
    "-O2",
]
cfg["include_dirs"] += torch_info["include_dirs"]
cfg["library_dirs"] = [torch_info["library_dir"]]
cfg["libraries"] = ["torch_cpu", "c10"]  # all the core needs; not torch_python, not CUDA
cfg["extra_link_args"] = ["-Wl,-rpath," + torch_info["library_dir"]]  # find them without LD_LIBRARY_PATH
cfg["sources"] = ["detr_core.cpp"]
cfg["parallel"] = True  # compile the two files at once
# Rebuild when any of these change (cppimport checksums them with the sources), including
# the installed torch (its version.py) and the code that computes these flags.
cfg["dependencies"] = ["detr_core.h", "backend.h", "mini_json.h", "sha256.h"] + torch_info["dependencies"]
%>
*/
// detr_cpp: the Python front end of detr_core. It includes no torch header (only
// detr_core.h), so it has no tie to torch's Python bindings and imports without the torch
// Python package: it needs numpy and the libtorch shared libraries, nothing else.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "detr_core.h"

namespace py = pybind11;

namespace {

// <notebook:numpy_in>
// A numpy image -> ImageView. A C-contiguous uint8 [H, W, 3] array is borrowed as it is
// (no copy); an array of the right dtype and shape laid out differently (a slice with a
// step, a transposed or Fortran-order view) is copied once into a C-contiguous array. Either
// way `keep` holds the array, so its buffer outlives the call into C++.
detr::ImageView to_view(const py::handle& image, py::array& keep, const std::string& what) {
  if (!py::isinstance<py::array>(image) && !py::hasattr(image, "__array_interface__") &&
      !py::hasattr(image, "__array__")) {
    throw py::type_error(what + " must be a numpy uint8 array [H, W, 3] (RGB), got " +
                         std::string(py::str(py::type::handle_of(image).attr("__name__"))));
  }
  py::array array = py::array::ensure(image);
  if (!array) throw py::type_error(what + " could not be converted to a numpy array");
  std::string shape = "(";
  for (py::ssize_t axis = 0; axis < array.ndim(); ++axis) {
    shape += (axis ? ", " : "") + std::to_string(array.shape(axis));
  }
  shape += array.ndim() == 1 ? ",)" : ")";
  if (array.ndim() == 2) {
    throw py::value_error(what + " has shape " + shape + " (greyscale?); expected uint8 [H, W, 3] RGB: "
                          "convert with numpy.repeat(image[:, :, None], 3, axis=2)");
  }
  if (array.ndim() != 3) {
    throw py::value_error(what + " must have 3 dimensions [H, W, 3], got " + std::to_string(array.ndim()) +
                          " (shape " + shape + ")");
  }
  if (array.shape(2) == 4) {
    throw py::value_error(what + " has 4 channels (RGBA?); expected 3 (RGB): drop or composite the alpha "
                          "channel first, e.g. image[:, :, :3]");
  }
  if (array.shape(2) != 3) {
    throw py::value_error(what + " must have 3 channels (RGB) in the last dimension, got shape " + shape +
                          (array.shape(2) == 1 ? ": convert with numpy.repeat(image, 3, axis=2)" : ""));
  }
  if (array.dtype().kind() != 'u' || array.dtype().itemsize() != 1) {
    throw py::value_error(what + " must have dtype uint8 (0-255), got " + std::string(py::str(array.dtype())) +
                          "; for floats in [0, 1] use (image * 255).round().astype(numpy.uint8)");
  }
  if (!(array.flags() & py::array::c_style)) {
    array = py::array::ensure(array, py::array::c_style);  // the one copy, for non-contiguous input
    if (!array) throw py::value_error(what + ": could not make a contiguous copy");
  }
  keep = array;
  return {static_cast<const std::uint8_t*>(array.data()), array.shape(0), array.shape(1)};
}
// </notebook:numpy_in>

// <notebook:numpy_out>
// std::vector -> numpy array without a copy: the vector moves to the heap, a capsule owns
// it, and numpy frees it through the capsule when the array is garbage-collected.
template <typename T>
py::array_t<T> to_numpy(std::vector<T>&& values, std::vector<py::ssize_t> shape) {
  auto owned = std::make_unique<std::vector<T>>(std::move(values));
  T* data = owned->data();
  py::capsule owner(owned.get(), [](void* pointer) { delete static_cast<std::vector<T>*>(pointer); });
  owned.release();  // the capsule owns it now
  return py::array_t<T>(shape, data, owner);
}

py::dict to_dict(detr::Detections&& found) {
  const auto count = static_cast<py::ssize_t>(found.size());
  py::dict result;
  result["boxes"] = to_numpy(std::move(found.boxes), {count, 4});
  result["scores"] = to_numpy(std::move(found.scores), {count});
  result["labels"] = to_numpy(std::move(found.labels), {count});
  return result;
}
// </notebook:numpy_out>

std::string path_string(const py::object& path, const char* what = "model_path") {
  if (!py::isinstance<py::str>(path) && !py::isinstance<py::bytes>(path) && !py::hasattr(path, "__fspath__")) {
    throw py::type_error(std::string(what) + " must be a str, bytes or os.PathLike, got " +
                         std::string(py::str(py::type::handle_of(path).attr("__name__"))));
  }
  std::string text = py::str(py::module_::import("os").attr("fsdecode")(path));
  // C++ file APIs stop at a NUL byte: "a.pt\0b" would open "a.pt"
  if (text.find('\0') != std::string::npos) throw py::value_error(std::string(what) + " contains a NUL byte");
  return text;
}

// ---- strict arguments: pybind11 would turn False into 0.0, 2.0 into 2, and an int too large for
// C++ into "Unable to cast"; these name the argument and what it must be instead.

std::string type_name(const py::handle& value) {
  return py::str(py::type::handle_of(value).attr("__name__"));
}

bool is_bool(const py::handle& value) {
  // leaked on purpose: a static py::object would be released after the interpreter is gone
  static const py::handle numpy_bool = py::object(py::module_::import("numpy").attr("bool_")).release();
  return py::isinstance<py::bool_>(value) || py::isinstance(value, numpy_bool);
}

// A real number (int, float, numpy scalar, ...) but not a bool, or None.
std::optional<double> threshold_argument(const py::handle& value) {
  if (value.is_none()) return std::nullopt;
  static const py::handle real = py::object(py::module_::import("numbers").attr("Real")).release();
  if (is_bool(value) || !py::isinstance(value, real)) {
    throw py::type_error("score_threshold must be a number in [0, 1) or None, got " + type_name(value));
  }
  return py::float_(py::reinterpret_borrow<py::object>(value)).cast<double>();  // the range: detr_core
}

bool flag_argument(const py::handle& value, const char* name) {
  if (!is_bool(value)) throw py::type_error(std::string(name) + " must be True or False, got " + type_name(value));
  return py::cast<bool>(py::bool_(py::reinterpret_borrow<py::object>(value)));
}

int threads_argument(const py::handle& value) {
  if (value.is_none()) return 0;
  if (is_bool(value) || !PyIndex_Check(value.ptr())) {
    throw py::type_error("num_threads must be an int or None, got " + type_name(value));
  }
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
  if (!index) throw py::error_already_set();
  int overflow = 0;
  const long long number = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  const int maximum = detr::max_num_threads();
  if (overflow != 0 || number < 1 || number > maximum) {
    throw py::value_error("num_threads must be in 1.." + std::to_string(maximum) +
                          " (4 x this machine's CPUs) or None, got " + std::string(py::str(index)));
  }
  return static_cast<int>(number);
}

}  // namespace

PYBIND11_MODULE(detr_cpp, m) {
  m.doc() =
      "DETR inference in C++ (libtorch), without the torch Python package.\n\n"
      "    import detr_cpp\n"
      "    detector = detr_cpp.Detector('model.pt')\n"
      "    found = detector.detect(rgb_uint8_array)  # {'boxes', 'scores', 'labels'}\n";

  // C++ errors -> the Python exceptions a caller expects.
  py::register_exception_translator([](std::exception_ptr pointer) {
    try {
      if (pointer) std::rethrow_exception(pointer);
    } catch (const detr::ModelNotFound& error) {
      PyErr_SetString(PyExc_FileNotFoundError, error.what());
    } catch (const detr::InvalidInput& error) {
      PyErr_SetString(PyExc_ValueError, error.what());
    } catch (const detr::InvalidModel& error) {
      PyErr_SetString(PyExc_ValueError, error.what());
    } catch (const detr::InferenceError& error) {
      PyErr_SetString(PyExc_RuntimeError, error.what());
    }
  });

  py::class_<detr::Detector>(m, "Detector",
                             "A loaded DETR artefact (.pt exported by python -m detr_deploy.export).\n\n"
                             "Detector(model_path, num_threads=None, optimize=True, profiling_executor=False,\n"
                             "         require_sidecar=False)\n\n"
                             "Loading checks the file against the sha256 its sidecar (model.json beside model.pt)\n"
                             "records, the metadata against the model, and that no weight is NaN or inf.\n"
                             "num_threads: torch's intra-op thread count (process-wide), 1..4 x the CPUs; None keeps\n"
                             "the default.\n"
                             "optimize: freeze + optimize_for_inference after loading (faster; results differ\n"
                             "from the saved graph by ~1e-5). False runs the saved graph exactly as torch.jit.load.\n"
                             "profiling_executor: run the optimised graph through torch's profiling executor\n"
                             "(slower first calls at each new input size; same outputs; for comparisons).\n"
                             "require_sidecar: refuse a model without a sidecar recording its sha256.\n"
                             "detect() and detect_batch() release the GIL and may be called from several threads.")
      // <notebook:gil>
      .def(py::init([](const py::object& model_path, const py::object& num_threads, const py::object& optimize,
                       const py::object& profiling_executor, const py::object& require_sidecar) {
             detr::Options options;
             options.optimize = flag_argument(optimize, "optimize");
             options.profiling_executor = flag_argument(profiling_executor, "profiling_executor");
             options.require_sidecar = flag_argument(require_sidecar, "require_sidecar");
             options.num_threads = threads_argument(num_threads);
             std::string path = path_string(model_path);
             py::gil_scoped_release release;  // hashing, loading and optimising take a while
             return std::make_unique<detr::Detector>(path, options);
           }),
           py::arg("model_path"), py::arg("num_threads") = py::none(), py::arg("optimize") = true,
           py::arg("profiling_executor") = false, py::arg("require_sidecar") = false)
      .def(
          "detect",
          [](const detr::Detector& self, const py::handle& image, const py::handle& threshold) {
            const std::optional<double> score_threshold = threshold_argument(threshold);
            py::array keep;  // declared before `release`, so it is released after the GIL is back
            detr::ImageView view = to_view(image, keep, "image");
            detr::Detections found;
            {
              py::gil_scoped_release release;  // other Python threads run while the model does
              found = self.detect(view, score_threshold);
            }
            return to_dict(std::move(found));
          },
          py::arg("image"), py::arg("score_threshold") = py::none(),
          "Detect objects in one uint8 RGB image [H, W, 3] (numpy; non-contiguous arrays are copied).\n"
          "Returns {'boxes': float32 [N, 4] x0 y0 x1 y1 in input pixels, 'scores': float32 [N]\n"
          "descending, 'labels': int64 [N]}. score_threshold defaults to the artefact's.\n"
          "Raises ValueError for a bad image (dtype, shape, empty, a side above max_side).")
      // </notebook:gil>
      .def(
          "detect_batch",
          [](const detr::Detector& self, const py::sequence& images, const py::handle& threshold) {
            const std::optional<double> score_threshold = threshold_argument(threshold);
            if (py::isinstance<py::array>(images) && py::array::ensure(images).ndim() != 4) {
              throw py::type_error("detect_batch takes a list of images; for one image use detect()");
            }
            const auto count = static_cast<std::size_t>(py::len(images));
            std::vector<py::array> keep(count);
            std::vector<detr::ImageView> views;
            views.reserve(count);
            for (std::size_t index = 0; index < count; ++index) {
              views.push_back(to_view(images[index], keep[index], "images[" + std::to_string(index) + "]"));
            }
            std::vector<detr::Detections> found;
            {
              py::gil_scoped_release release;
              found = self.detect_batch(views, score_threshold);
            }
            py::list results;
            for (auto& detections : found) results.append(to_dict(std::move(detections)));
            return results;
          },
          py::arg("images"), py::arg("score_threshold") = py::none(),
          "Detect in several images of any sizes in one forward pass; one dict per image.")
      .def_property_readonly(
          "class_names", [](const detr::Detector& self) { return self.metadata().class_names; },
          "Class names, indexed by the labels detect() returns.")
      .def_property_readonly(
          "metadata",
          [](const detr::Detector& self) { return py::module_::import("json").attr("loads")(self.metadata().json); },
          "The artefact's metadata.json as a dict.")
      .def_property_readonly("model_path", &detr::Detector::model_path)
      .def_property_readonly("sha256", &detr::Detector::sha256, "The model file's sha256 (hex), computed at load.")
      .def_property_readonly("verified", &detr::Detector::verified,
                             "True when the sidecar recorded that sha256; False: no sidecar, integrity unchecked.")
      .def_property_readonly("backend", &detr::Detector::backend_name)
      .def_property_readonly("optimized", &detr::Detector::optimized)
      .def_property_readonly(
          "max_side", [](const detr::Detector& self) { return self.metadata().max_side; },
          "Largest accepted image side in pixels (the artefact's input.max_side).")
      .def_property_readonly(
          "score_threshold", [](const detr::Detector& self) { return self.metadata().score_threshold; },
          "The artefact's default score threshold.")
      .def("__repr__", [](const detr::Detector& self) {
        return "<detr_cpp.Detector " + std::string(py::str(py::repr(py::str(self.model_path())))) + " backend=" +
               self.backend_name() + " optimized=" + (self.optimized() ? "True" : "False") +
               " classes=" + std::to_string(self.metadata().class_names.size()) + ">";
      });

  m.def(
      "read_metadata",
      [](const py::object& model_path) {
        std::string path = path_string(model_path);
        std::string text = detr::read_metadata(path).json;
        return py::module_::import("json").attr("loads")(text);
      },
      py::arg("model_path"), "An artefact's metadata.json as a dict, checked, without loading the model.");
  m.def(
      "sha256_file",
      [](const py::object& path) {
        std::string name = path_string(path, "path");
        py::gil_scoped_release release;
        return detr::file_sha256(name);
      },
      py::arg("path"), "A file's sha256 as 64 hex digits (what Detector checks against the sidecar).");
  m.def("libtorch_version", &detr::libtorch_version, "Version of the libtorch this module was compiled against.");
  m.def("get_num_threads", &detr::num_threads, "torch's intra-op thread count in this process.");
  m.def("max_num_threads", &detr::max_num_threads, "The largest num_threads a Detector accepts (4 x the CPUs).");
}
