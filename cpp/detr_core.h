// detr_core: load an exported DETR artefact and run it, from plain C++.
//
// This header is deliberately free of torch, OpenCV and Python types: the Python module
// (detr_cpp.cpp) and the command-line program (detr_cli.cpp) include only this, and all
// libtorch code lives in detr_core.cpp. A C++ project links detr_core.cpp + torch_cpu + c10.
//
//   detr::Detector detector("model.pt");
//   detr::Detections found = detector.detect({rgb_pixels, height, width});
//   for (std::size_t i = 0; i < found.size(); ++i) ... found.boxes[4 * i] ... found.scores[i]
//
// Thread safety: a Detector is immutable after construction; detect() and detect_batch()
// may be called from several threads at once on the same Detector.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace detr {

// ---- errors: one base class, one subclass per kind of problem ------------------------
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The caller passed a bad image or threshold (Python: ValueError).
struct InvalidInput : Error {
  using Error::Error;
};
// The model file does not exist (Python: FileNotFoundError).
struct ModelNotFound : Error {
  using Error::Error;
};
// The file exists but is not a usable artefact: corrupt, not TorchScript, no or
// mismatching metadata, a sha256 that differs from its sidecar's, non-finite weights,
// unexpected forward() signature (Python: ValueError).
struct InvalidModel : Error {
  using Error::Error;
};
// The model failed while running or returned something unexpected (Python: RuntimeError).
struct InferenceError : Error {
  using Error::Error;
};

// ---- inputs and outputs --------------------------------------------------------------

// A borrowed RGB image: `height` rows of `width` pixels, 3 bytes (R, G, B) per pixel,
// rows packed one after another (row stride = 3 * width bytes). The Detector reads the
// pixels during the call and never keeps, frees or writes them.
struct ImageView {
  const std::uint8_t* data = nullptr;
  std::int64_t height = 0;
  std::int64_t width = 0;
};

// Detections in one image, best first.
struct Detections {
  std::vector<float> boxes;          // 4 per detection: x0, y0, x1, y1 in input pixels
  std::vector<float> scores;         // descending, in (score_threshold, 1]
  std::vector<std::int64_t> labels;  // index into Metadata::class_names
  std::size_t size() const { return scores.size(); }
};

// What the artefact says about itself (its embedded metadata.json, checked on load).
struct Metadata {
  std::string format;           // "detr_deploy.torchscript" (.pt) or "detr_deploy.aotinductor" (.pt2)
  int format_version = 0;       // 1
  std::string export_method;    // "script", "trace" or "torch.export"
  std::vector<std::string> class_names;
  std::int64_t max_side = 0;    // largest accepted image side, in pixels
  std::int64_t min_side = 1;    // smallest (input.min_side; torch.export's dynamic range starts at 2)
  // torch.export: the smallest shorter side after resizing for which the graph is valid
  // (its guards assume no feature map side of 1); refuses very elongated images. 1 = no limit.
  std::int64_t min_resized_side = 1;
  double score_threshold = 0;   // default threshold baked into the artefact
  std::int64_t top_k = 0;       // 0 = keep all
  std::int64_t min_size = 0;    // model input: shorter side resized to this ...
  std::int64_t max_size = 0;    // ... unless the longer side would pass this
  std::optional<std::pair<std::int64_t, std::int64_t>> traced_input_size;  // traced: (H, W)
  std::string torch_version;    // torch that exported it
  // AOTInductor: instruction sets of the CPU it was compiled on (-march=native), as
  // /proc/cpuinfo names them; loading on a CPU without one of them is refused (not SIGILL).
  std::vector<std::string> required_cpu_flags;
  std::string json;             // the metadata.json text, verbatim
};

struct Options {
  // > 0: torch's intra-op thread count, at most max_num_threads(). Process-wide (it is a
  // global of libtorch), so the last Detector created with a value wins. 0: torch's default.
  int num_threads = 0;
  // The sidecar (the model path with its extension replaced by .json, written at export) records
  // the file's sha256; when it is there the file must match it. true: refuse a model without
  // one (or whose sidecar has no sha256), so that integrity is never left unchecked.
  bool require_sidecar = false;
  // TorchScript only (an AOTInductor package is compiled already).
  // true: freeze the module and run optimize_for_inference after loading (faster; numbers
  // differ from the unoptimised graph by ~1e-5). false: run exactly the saved graph, as
  // torch.jit.load does in Python, for exact comparisons.
  bool optimize = true;
  // TorchScript with optimize=true only. false (default): run the frozen, optimised graph as it
  // is. true: through torch's profiling graph executor, as Python runs a module by default; it
  // records input shapes during the first calls and re-specialises the graph for them. On the
  // CPU nothing uses that (no fuser runs), so it only slows the first calls at each new input
  // shape (chapter 04, section 5.2). Outputs are identical either way.
  bool profiling_executor = false;
};

// ---- the detector --------------------------------------------------------------------
// <notebook:api>
class Detector {
 public:
  // Loads `model_path`; throws ModelNotFound / InvalidModel (see above).
  explicit Detector(const std::string& model_path, Options options = {});
  ~Detector();
  Detector(Detector&&) noexcept;
  Detector& operator=(Detector&&) noexcept;
  Detector(const Detector&) = delete;
  Detector& operator=(const Detector&) = delete;

  // Detections with score > score_threshold (default: the artefact's). Throws
  // InvalidInput for an empty image, a side above metadata().max_side, a null pointer or
  // a threshold outside [0, 1); InferenceError if the model fails.
  Detections detect(const ImageView& image, std::optional<double> score_threshold = std::nullopt) const;

  // Several images of any sizes in one forward pass (padding + mask), one result each.
  std::vector<Detections> detect_batch(const std::vector<ImageView>& images,
                                       std::optional<double> score_threshold = std::nullopt) const;

  const Metadata& metadata() const;
  const std::string& model_path() const;
  // The model file's sha256 (64 hex digits), computed at load; verified() is true when the
  // sidecar recorded it (false: no sidecar, integrity unchecked).
  const std::string& sha256() const;
  bool verified() const;
  std::string backend_name() const;  // "torchscript" or "aotinductor" (from metadata.format)
  bool optimized() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};
// </notebook:api>

// Reads and checks an artefact's metadata without loading the model.
Metadata read_metadata(const std::string& model_path);

// Checks an image against the limits (empty, null data, a side outside [min_side, max_side]).
void validate_image(const ImageView& image, std::int64_t max_side, std::int64_t min_side = 1);

// A file's sha256 as 64 lower-case hex digits (ModelNotFound / Error when it cannot be read).
std::string file_sha256(const std::string& path);

// libtorch this library was compiled against ("2.14.1"), and its intra-op thread count.
std::string libtorch_version();
int num_threads();
// The largest Options::num_threads accepted: 4 x this machine's CPUs (more only slows it down).
int max_num_threads();

}  // namespace detr
