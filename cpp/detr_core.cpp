// detr_core: the only translation unit that sees libtorch. See detr_core.h for the API.
//
// The // <notebook:NAME> ... // </notebook:NAME> comments mark the excerpts that chapter 02
// (notebooks/02_cpp_inference_with_cppimport.ipynb) prints and explains.

#include "detr_core.h"

#include <ATen/Parallel.h>
#include <caffe2/serialize/inline_container.h>  // PyTorchStreamReader: read one file of the archive
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>  // AOTInductor .pt2 (in libtorch_cpu)
#include <torch/csrc/jit/passes/frozen_graph_optimizations.h>  // OptimizeFrozenGraph
#include <torch/csrc/jit/runtime/graph_executor.h>            // GraphOptimizerEnabledGuard
#include <torch/script.h>                       // TorchScript load/run; NOT <torch/extension.h>
#include <torch/version.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "backend.h"
#include "mini_json.h"
#include "sha256.h"

namespace detr {
namespace {

constexpr const char* kTorchScriptFormat = "detr_deploy.torchscript";
constexpr int kTorchScriptFormatVersion = 1;
constexpr const char* kAotiFormat = "detr_deploy.aotinductor";
constexpr int kAotiFormatVersion = 1;
// torch.jit.save(_extra_files=...) and torch.export's package_pt2(extra_files=...) both
// store extra files under extra/ of a PyTorch zip archive: one reader serves both formats.
constexpr const char* kMetadataRecord = "extra/metadata.json";

// torch's messages carry a C++ backtrace (c10::Error) or a TorchScript traceback
// (JITException); keep the line that says what went wrong.
std::string summarise(const std::exception& error) {
  std::string text = error.what();
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&error)) {
    text = c10_error->what_without_backtrace();
  }
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) {
    if (line.find_first_not_of(" \t") != std::string::npos) lines.push_back(line);
  }
  if (lines.empty()) return "unknown error";
  // A TorchScript traceback ends with the Python-style exception line.
  if (text.find("Traceback of TorchScript") != std::string::npos) return lines.back();
  return lines.front();
}

std::string describe(const at::Tensor& tensor) {
  std::ostringstream out;
  out << c10::toString(tensor.scalar_type()) << " " << tensor.sizes();
  return out.str();
}

// ---- metadata ------------------------------------------------------------------------

class MetadataReader {
 public:
  MetadataReader(const json::Value& root, const std::string& path) : root_(root), path_(path) {}

  const json::Value& get(const std::string& dotted, const char* expected) const {
    const json::Value* value = &root_;
    std::size_t start = 0;
    while (true) {
      std::size_t dot = dotted.find('.', start);
      std::string key = dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      value = value->find(key);
      if (value == nullptr) fail(dotted, expected);
      if (dot == std::string::npos) return *value;
      start = dot + 1;
    }
  }
  std::string string(const std::string& key) const {
    const json::Value& value = get(key, "a string");
    if (!value.is_string()) fail(key, "a string");
    return value.as_string();
  }
  double number(const std::string& key) const {
    const json::Value& value = get(key, "a number");
    if (!value.is_number()) fail(key, "a number");
    return value.as_number();
  }
  std::int64_t integer(const std::string& key, std::int64_t minimum) const {
    double value = number(key);
    if (value != std::floor(value) || value < double(minimum) || value > 1e15) {
      fail(key, ("an integer >= " + std::to_string(minimum)).c_str());
    }
    return static_cast<std::int64_t>(value);
  }
  [[noreturn]] void fail(const std::string& key, const char* expected) const {
    throw InvalidModel(path_ + ": metadata.json needs '" + key + "' to be " + expected);
  }

 private:
  const json::Value& root_;
  const std::string& path_;
};

// detr_core feeds uint8 [H, W, 3] RGB pixels: an artefact whose metadata asks for anything
// else was exported for another caller. Absent fields are not required (older exports).
void check_input_contract(const json::Value& root, const MetadataReader& read) {
  const json::Value* input = root.find("input");
  if (input == nullptr || !input->is_object()) return;
  const std::pair<const char*, const char*> expected[] = {{"dtype", "uint8"}, {"layout", "HWC"}, {"color", "RGB"}};
  for (const auto& [key, value] : expected) {
    const json::Value* found = input->find(key);
    if (found != nullptr && !(found->is_string() && found->as_string() == value)) {
      read.fail(std::string("input.") + key, ("\"" + std::string(value) + "\" (what detr_core feeds)").c_str());
    }
  }
  const json::Value* channels = input->find("channels");
  if (channels != nullptr && !(channels->is_number() && channels->as_number() == 3)) {
    read.fail("input.channels", "3 (RGB)");
  }
}

Metadata parse_metadata(const std::string& text, const std::string& path) {
  json::Value root;
  try {
    root = json::parse(text);
  } catch (const json::ParseError& error) {
    throw InvalidModel(path + ": metadata.json is not valid JSON (" + error.what() + ")");
  }
  if (!root.is_object()) throw InvalidModel(path + ": metadata.json is not a JSON object");
  MetadataReader read(root, path);

  Metadata metadata;
  metadata.json = text;
  metadata.format = read.string("format");
  metadata.format_version = static_cast<int>(read.integer("format_version", 0));
  const bool known = (metadata.format == kTorchScriptFormat && metadata.format_version == kTorchScriptFormatVersion) ||
                     (metadata.format == kAotiFormat && metadata.format_version == kAotiFormatVersion);
  if (!known) {
    throw InvalidModel(path + " has format '" + metadata.format + "' v" + std::to_string(metadata.format_version) +
                       "; this build of detr_core reads '" + kTorchScriptFormat + "' v" +
                       std::to_string(kTorchScriptFormatVersion) + " and '" + kAotiFormat + "' v" +
                       std::to_string(kAotiFormatVersion));
  }
  metadata.export_method = read.string("export_method");
  const json::Value& names = read.get("class_names", "a list of strings");
  if (!names.is_array()) read.fail("class_names", "a list of strings");
  for (const json::Value& name : names.items()) {
    if (!name.is_string()) read.fail("class_names", "a list of strings");
    metadata.class_names.push_back(name.as_string());
  }
  std::int64_t num_classes = read.integer("num_classes", 1);
  if (num_classes != static_cast<std::int64_t>(metadata.class_names.size())) {
    throw InvalidModel(path + ": metadata.json says num_classes=" + std::to_string(num_classes) + " but lists " +
                       std::to_string(metadata.class_names.size()) + " class_names");
  }
  metadata.max_side = read.integer("input.max_side", 1);
  check_input_contract(root, read);
  // torch.export's dynamic sizes have a lower bound (2: sizes 0 and 1 are specialised)
  if (const json::Value* input = root.find("input"); input != nullptr && input->find("min_side") != nullptr) {
    metadata.min_side = read.integer("input.min_side", 1);
    if (metadata.min_side > metadata.max_side) read.fail("input.min_side", "<= input.max_side");
  }
  if (const json::Value* input = root.find("input"); input != nullptr && input->find("min_resized_side") != nullptr) {
    metadata.min_resized_side = read.integer("input.min_resized_side", 1);
  }
  metadata.score_threshold = read.number("score_threshold");
  if (!(metadata.score_threshold >= 0.0 && metadata.score_threshold < 1.0)) {
    read.fail("score_threshold", "in [0, 1)");
  }
  metadata.top_k = read.integer("top_k", 0);
  metadata.min_size = read.integer("preprocess.min_size", 1);
  metadata.max_size = read.integer("preprocess.max_size", 1);
  if (const json::Value* size = root.find("traced_input_size"); size != nullptr && !size->is_null()) {
    if (!size->is_array() || size->items().size() != 2 || !size->items()[0].is_number() ||
        !size->items()[1].is_number()) {
      read.fail("traced_input_size", "[height, width]");
    }
    metadata.traced_input_size = std::make_pair(static_cast<std::int64_t>(size->items()[0].as_number()),
                                                static_cast<std::int64_t>(size->items()[1].as_number()));
  }
  if (const json::Value* compiled = root.find("compiled_for"); compiled != nullptr && compiled->is_object()) {
    if (const json::Value* flags = compiled->find("required_cpu_flags"); flags != nullptr) {
      if (!flags->is_array()) read.fail("compiled_for.required_cpu_flags", "a list of strings");
      for (const json::Value& flag : flags->items()) {
        if (!flag.is_string()) read.fail("compiled_for.required_cpu_flags", "a list of strings");
        metadata.required_cpu_flags.push_back(flag.as_string());
      }
    }
  }
  if (const json::Value* version = root.find("torch_version"); version != nullptr && version->is_string()) {
    metadata.torch_version = version->as_string();
  }
  return metadata;
}

// Artefacts exported at one input size (traced, or torch.export without dynamic sizes).
void check_fixed_size(const ImageView& image, const Metadata& metadata) {
  if (!metadata.traced_input_size) return;
  const auto [height, width] = *metadata.traced_input_size;
  if (image.height != height || image.width != width) {
    const char* how = metadata.export_method == "trace" ? "traced" : "exported";
    throw InvalidInput("this artefact was " + std::string(how) + " at " + std::to_string(height) + "x" +
                       std::to_string(width) + " and only accepts images of that size, got " +
                       std::to_string(image.height) + "x" + std::to_string(image.width) +
                       "; export with method='script' (or dynamic sizes) for any size");
  }
}

// ---- the TorchScript backend ---------------------------------------------------------

// <notebook:from_blob>
// A tensor that *borrows* the caller's pixels: no copy, no deleter, so libtorch never
// frees them and the tensor must not outlive this call (it does not: the model's first
// op, a dtype conversion, makes its own copy). The shape is {rows, columns, channels},
// the order the bytes have in memory: {height, width, 3}, not {width, height, 3}.
// The pointer is const_cast because from_blob takes void*; the pipeline never writes to
// its input, and the caller's buffer is never converted in place.
at::Tensor borrow_pixels(const ImageView& image) {
  return torch::from_blob(const_cast<std::uint8_t*>(image.data), {image.height, image.width, 3},
                          torch::TensorOptions().dtype(torch::kUInt8).device(torch::kCPU));
}
// </notebook:from_blob>

Detections to_detections(at::Tensor boxes, at::Tensor scores, at::Tensor labels);

// <notebook:outputs>
// (boxes [N, 4] float32, scores [N] float32, labels [N] int64) -> plain vectors. Every
// dtype and shape is checked first, and the byte count comes from numel() of a tensor of
// the checked dtype: a wrong or corrupted artefact gives an error, never garbage.
Detections to_detections(const c10::IValue& value) {
  if (!value.isTuple() || value.toTupleRef().elements().size() != 3) {
    throw InferenceError("the model returned " + std::string(value.tagKind()) +
                         ", expected a tuple (boxes, scores, labels)");
  }
  const auto& elements = value.toTupleRef().elements();
  for (const auto& element : elements) {
    if (!element.isTensor()) throw InferenceError("the model returned a tuple holding " + std::string(element.tagKind()));
  }
  return to_detections(elements[0].toTensor(), elements[1].toTensor(), elements[2].toTensor());
}

Detections to_detections(at::Tensor boxes, at::Tensor scores, at::Tensor labels) {
  boxes = boxes.contiguous();
  scores = scores.contiguous();
  labels = labels.contiguous();
  const bool ok = boxes.scalar_type() == at::kFloat && boxes.dim() == 2 && boxes.size(1) == 4 &&
                  scores.scalar_type() == at::kFloat && scores.dim() == 1 && scores.size(0) == boxes.size(0) &&
                  labels.scalar_type() == at::kLong && labels.dim() == 1 && labels.size(0) == boxes.size(0) &&
                  boxes.device().is_cpu() && scores.device().is_cpu() && labels.device().is_cpu();
  if (!ok) {
    throw InferenceError("the model returned boxes " + describe(boxes) + ", scores " + describe(scores) + ", labels " +
                         describe(labels) + "; expected Float [N, 4], Float [N], Long [N] on the CPU");
  }
  Detections found;
  const float* box_data = boxes.const_data_ptr<float>();
  const float* score_data = scores.const_data_ptr<float>();
  const std::int64_t* label_data = labels.const_data_ptr<std::int64_t>();
  found.boxes.assign(box_data, box_data + boxes.numel());
  found.scores.assign(score_data, score_data + scores.numel());
  found.labels.assign(label_data, label_data + labels.numel());
  return found;
}
// </notebook:outputs>

// ---- checks of the loaded model --------------------------------------------------------

// A NaN or inf weight makes every answer garbage (NaN scores are silently dropped by the
// threshold): refuse it at load. One pass over the weights, milliseconds.
void check_finite(const std::string& path, const std::string& what, const at::Tensor& tensor) {
  if (!tensor.defined() || !tensor.is_floating_point()) return;
  c10::InferenceMode inference_mode;
  // AOTInductor keeps some weights in MKLDNN's opaque layout, which isfinite cannot read
  const at::Tensor dense = tensor.is_mkldnn() ? tensor.to_dense() : tensor;
  if (dense.layout() != at::kStrided) return;
  const std::int64_t bad = dense.numel() - at::isfinite(dense).sum().item<std::int64_t>();
  if (bad > 0) {
    throw InvalidModel(path + ": " + what + " holds " + std::to_string(bad) + " non-finite value" +
                       (bad == 1 ? "" : "s") + " (NaN or inf) among " + std::to_string(tensor.numel()) +
                       ": a damaged or diverged model");
  }
}

void check_finite_weights(const torch::jit::Module& module, const std::string& path) {
  for (const auto& parameter : module.named_parameters(/*recurse=*/true)) {
    check_finite(path, "parameter '" + parameter.name + "'", parameter.value);
  }
  for (const auto& buffer : module.named_buffers(/*recurse=*/true)) {
    check_finite(path, "buffer '" + buffer.name + "'", buffer.value);
  }
}

// The class names must fit the model: DETR's classifier (class_embed) has one output per class
// plus "no object", and the scripted pipeline keeps num_classes. Either that is found must agree
// with metadata.json, else labels would name the wrong classes (or none).
void check_class_count(const torch::jit::Module& module, const Metadata& metadata, const std::string& path) {
  const auto classes = static_cast<std::int64_t>(metadata.class_names.size());
  if (module.hasattr("num_classes")) {
    const c10::IValue value = module.attr("num_classes");
    if (value.isInt() && value.toInt() != classes) {
      throw InvalidModel(path + ": metadata.json lists " + std::to_string(classes) +
                         " class_names but the model was built for num_classes=" + std::to_string(value.toInt()));
    }
  }
  const std::string suffix = "class_embed.weight";
  for (const auto& parameter : module.named_parameters(/*recurse=*/true)) {
    const std::string& name = parameter.name;
    if (name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    if (parameter.value.dim() != 2) continue;
    const std::int64_t outputs = parameter.value.size(0);
    if (outputs != classes + 1) {
      throw InvalidModel(path + ": the model's classifier " + name + " has " + std::to_string(outputs) +
                         " outputs (classes + 'no object') but metadata.json lists " + std::to_string(classes) +
                         " class_names");
    }
  }
}

class TorchScriptBackend final : public Backend {
 public:
  TorchScriptBackend(const std::string& path, const Metadata& metadata, const Options& options)
      : metadata_(metadata),
        optimized_(options.optimize),
        // the saved graph runs as torch.jit.load runs it in Python: profiling executor
        profiling_executor_(options.profiling_executor || !options.optimize) {
    // <notebook:load>
    torch::jit::Module module;
    try {
      module = torch::jit::load(path, torch::kCPU);
    } catch (const std::exception& error) {
      throw InvalidModel(path + " could not be loaded as TorchScript: " + summarise(error));
    }
    module.eval();
    const bool has_batch = module.find_method("forward_batch").has_value();
    check_signature(module, path);
    check_finite_weights(module, path);  // before freezing, while the weights still have their names
    check_class_count(module, metadata, path);
    if (options.optimize) {
      // Freeze (inline weights and attributes as constants), then fuse for inference
      // (conv+bn folding, MKLDNN layouts...). Done here, after loading, because a module
      // saved after optimize_for_inference cannot be loaded back.
      std::vector<std::string> keep;
      if (has_batch) keep.push_back("forward_batch");
      try {
        torch::jit::Module frozen = torch::jit::freeze(module, keep);
        // C++'s freeze() folds conv+batch-norm etc. in forward only (Python's torch.jit.freeze
        // also does every preserved method): without this, forward_batch ran unfolded, 2x slower.
        for (const std::string& method : keep) {
          std::shared_ptr<torch::jit::Graph> graph = frozen.get_method(method).graph();
          torch::jit::OptimizeFrozenGraph(graph, /*optimize_numerics=*/true);
        }
        module = torch::jit::optimize_for_inference(frozen, keep);
      } catch (const std::exception& error) {
        throw InvalidModel(path + ": freezing/optimising failed (" + summarise(error) +
                           "); load it with optimize=false to run the saved graph as is");
      }
    }
    module_ = module;
    forward_ = module_.find_method("forward");
    if (has_batch) forward_batch_ = module_.find_method("forward_batch");
    // </notebook:load>
  }

  std::string name() const override { return "torchscript"; }
  bool optimized() const override { return optimized_; }

  // <notebook:run>
  Detections run(const ImageView& image, double score_threshold) const override {
    check_call(image, score_threshold);
    // InferenceMode (thread-local, RAII): no autograd bookkeeping, no version counters.
    c10::InferenceMode inference_mode;
    // Thread-local, restored on return: other threads and other modules are unaffected.
    torch::jit::GraphOptimizerEnabledGuard executor(profiling_executor_);
    std::vector<c10::IValue> inputs{borrow_pixels(image)};
    if (takes_threshold_) inputs.emplace_back(score_threshold);
    c10::IValue output;
    try {
      // Method::operator() is const and the graph executor is thread-safe, so several
      // threads may be here at once with the same module.
      output = (*forward_)(std::move(inputs));
    } catch (const std::exception& error) {
      throw InferenceError("the model failed: " + summarise(error));
    }
    return to_detections(output);
  }
  // </notebook:run>

  std::vector<Detections> run_batch(const std::vector<ImageView>& images, double score_threshold) const override {
    std::vector<Detections> results;
    if (!forward_batch_) {  // traced artefacts have forward only
      for (const ImageView& image : images) results.push_back(run(image, score_threshold));
      return results;
    }
    c10::InferenceMode inference_mode;
    torch::jit::GraphOptimizerEnabledGuard executor(profiling_executor_);
    c10::List<at::Tensor> tensors;
    tensors.reserve(images.size());
    for (const ImageView& image : images) tensors.push_back(borrow_pixels(image));
    c10::IValue output;
    try {
      output = (*forward_batch_)({c10::IValue(tensors), c10::IValue(score_threshold)});
    } catch (const std::exception& error) {
      throw InferenceError("the model failed: " + summarise(error));
    }
    if (!output.isList() || output.toListRef().size() != images.size()) {
      throw InferenceError("forward_batch returned " + std::string(output.tagKind()) + ", expected a list of " +
                           std::to_string(images.size()) + " results");
    }
    for (const c10::IValue& item : output.toListRef()) results.push_back(to_detections(item));
    return results;
  }

 private:
  // forward(image: Tensor[, score_threshold: Optional[float]]): scripted artefacts take
  // the threshold, traced ones have it baked in.
  void check_signature(const torch::jit::Module& module, const std::string& path) {
    auto forward = module.find_method("forward");
    if (!forward) throw InvalidModel(path + " has no forward() method");
    const auto& arguments = forward->function().getSchema().arguments();  // includes self
    bool ok = (arguments.size() == 2 || arguments.size() == 3) &&
              arguments[1].type()->kind() == c10::TypeKind::TensorType;
    if (ok && arguments.size() == 3) {
      auto optional = arguments[2].type()->cast<c10::OptionalType>();
      ok = optional && optional->getElementType()->kind() == c10::TypeKind::FloatType;
    }
    if (!ok) {
      std::ostringstream schema;
      schema << forward->function().getSchema();
      throw InvalidModel(path + ": forward() has signature " + schema.str() +
                         ", expected forward(image: Tensor, score_threshold: Optional[float])");
    }
    takes_threshold_ = arguments.size() == 3;
  }

  void check_call(const ImageView& image, double score_threshold) const {
    check_fixed_size(image, metadata_);
    if (!takes_threshold_ && score_threshold != metadata_.score_threshold) {
      throw InvalidInput("this artefact's forward() has its score threshold fixed at " +
                         std::to_string(metadata_.score_threshold) + "; export with method='script' to choose it per call");
    }
  }

  Metadata metadata_;
  bool optimized_;
  bool profiling_executor_;
  bool takes_threshold_ = true;
  torch::jit::Module module_;
  std::optional<torch::jit::Method> forward_;
  std::optional<torch::jit::Method> forward_batch_;
};


// ---- the AOTInductor backend ---------------------------------------------------------

// This CPU's feature flags from /proc/cpuinfo; empty where there is none (not Linux/x86).
std::vector<std::string> cpu_flags() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    return {std::istream_iterator<std::string>(words), std::istream_iterator<std::string>()};
  }
  return {};
}

// A package compiled with -march=native may use any instruction set of the CPU it was built
// on; running it on a CPU without one kills the process (SIGILL). Refuse it up front.
void check_cpu(const Metadata& metadata, const std::string& path) {
  if (metadata.required_cpu_flags.empty()) return;
  const std::vector<std::string> have = cpu_flags();
  if (have.empty()) return;  // nothing to compare with: the metadata was written on x86 Linux
  std::string missing;
  for (const std::string& flag : metadata.required_cpu_flags) {
    if (std::find(have.begin(), have.end(), flag) == have.end()) missing += (missing.empty() ? "" : ", ") + flag;
  }
  if (!missing.empty()) {
    throw InvalidModel(path + " was compiled (-march=native) on a CPU with " + missing +
                       ", which this CPU lacks: compile the package on this machine, or run the TorchScript artefact");
  }
}

// <notebook:aoti>
// A .pt2 package made by detr_deploy.export.aoti.export_aoti: torch.export's graph of the
// same pipeline, compiled ahead of time by Inductor into a shared library inside the zip.
// forward(image uint8 [H, W, 3], score_threshold float32 []) -> (boxes, scores, labels).
class AotiBackend final : public Backend {
 public:
  AotiBackend(const std::string& path, const Metadata& metadata, const Options& /*options*/) : metadata_(metadata) {
    check_cpu(metadata, path);
    try {
      // Unzips to a temporary folder and dlopens the compiled model. One runner: calls from
      // several threads take turns on it (the container hands out runners under a mutex).
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "model");
    } catch (const std::exception& error) {
      throw InvalidModel(path + " could not be loaded as an AOTInductor package: " + summarise(error));
    }
    std::vector<std::string> spec;
    try {
      spec = loader_->get_call_spec();  // the pytree specs of inputs and outputs
    } catch (const std::exception& error) {
      throw InvalidModel(path + ": the AOTInductor package has no call spec: " + summarise(error));
    }
    if (spec.size() != 2) throw InvalidModel(path + ": unexpected AOTInductor call spec");
    std::unordered_map<std::string, at::Tensor> constants;
    try {
      constants = loader_->get_runner()->extract_constants_map(/*use_inactive=*/false);
    } catch (const std::exception&) {
      // a package whose runner cannot list its constants: the sidecar's sha256 still covers them
    }
    for (const auto& [name, tensor] : constants) check_finite(path, "constant '" + name + "'", tensor);
  }

  std::string name() const override { return "aotinductor"; }
  bool optimized() const override { return true; }  // compiled ahead of time; nothing to choose

  Detections run(const ImageView& image, double score_threshold) const override {
    check_fixed_size(image, metadata_);
    c10::InferenceMode inference_mode;
    // The threshold is a 0-d float32 tensor input (torch.export would bake a Python float in
    // as a constant); float32, as the TorchScript graph compares float32 scores with it.
    std::vector<at::Tensor> inputs{borrow_pixels(image),
                                   torch::scalar_tensor(score_threshold, torch::TensorOptions().dtype(torch::kFloat))};
    std::vector<at::Tensor> outputs;
    try {
      outputs = loader_->run(inputs);
    } catch (const std::exception& error) {
      throw InferenceError("the model failed: " + summarise(error));
    }
    if (outputs.size() != 3) {
      throw InferenceError("the model returned " + std::to_string(outputs.size()) +
                           " tensors, expected 3 (boxes, scores, labels)");
    }
    return to_detections(outputs[0], outputs[1], outputs[2]);
  }
  // </notebook:aoti>

  // The export has one image per call; a batch is a loop (padding + mask would need a
  // second exported graph).
  std::vector<Detections> run_batch(const std::vector<ImageView>& images, double score_threshold) const override {
    std::vector<Detections> results;
    results.reserve(images.size());
    for (const ImageView& image : images) results.push_back(run(image, score_threshold));
    return results;
  }

 private:
  Metadata metadata_;
  // run() is not const in the loader's API but is safe to call concurrently (see above).
  mutable std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
};

// DetectionPipeline.resized_size's shorter side, in the same integer arithmetic.
std::int64_t resized_short_side(const ImageView& image, const Metadata& metadata) {
  const std::int64_t short_side = std::min(image.height, image.width);
  const std::int64_t long_side = std::max(image.height, image.width);
  const std::int64_t rounded = (2 * metadata.max_size * short_side + long_side) / (2 * long_side);
  return std::max<std::int64_t>(std::min(metadata.min_size, rounded), 1);
}

void check_resized(const ImageView& image, const Metadata& metadata) {
  if (metadata.min_resized_side <= 1) return;
  const std::int64_t resized = resized_short_side(image, metadata);
  if (resized < metadata.min_resized_side) {
    throw InvalidInput("image " + std::to_string(image.height) + "x" + std::to_string(image.width) +
                       " is too elongated for this export: its shorter side would be resized to " +
                       std::to_string(resized) + " px, below the " + std::to_string(metadata.min_resized_side) +
                       " px its graph assumes (input.min_resized_side); pad it towards a squarer shape");
  }
}

double resolve_threshold(std::optional<double> requested, const Metadata& metadata) {
  double threshold = requested.value_or(metadata.score_threshold);
  if (!(threshold >= 0.0 && threshold < 1.0)) {  // also rejects NaN
    throw InvalidInput("score_threshold must be in [0, 1), got " + json::number(threshold));
  }
  return threshold;
}

// ---- integrity: the file against its sidecar ------------------------------------------------

struct Integrity {
  std::string sha256;
  bool verified = false;
};

// Whether `text` is 64 hex digits; lower-cases it.
bool normalise_digest(std::string& text) {
  if (text.size() != 64) return false;
  for (char& c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return true;
}

// The export writes `model.json` beside `model.pt` with the file's sha256 and size (Python's
// load_artefact checks the same). A file that disagrees with it is refused: flipped bits,
// truncation or a model swapped under its sidecar never load. Without a sidecar the sha256 is
// still computed (and reported), but nothing says what it should be: integrity is unchecked.
Integrity check_integrity(const std::string& model_path, bool require_sidecar) {
  namespace fs = std::filesystem;
  const fs::path model(model_path);
  const fs::path sidecar = fs::path(model_path).replace_extension(".json");
  const std::string sidecar_name = sidecar.filename().string();
  std::error_code error_code;
  std::optional<std::string> expected_digest;
  std::optional<std::uintmax_t> expected_size;
  if (sidecar != model && fs::is_regular_file(sidecar, error_code)) {
    constexpr std::uintmax_t kMaxSidecarBytes = 16u << 20;  // metadata: kilobytes
    const std::uintmax_t sidecar_bytes = fs::file_size(sidecar, error_code);
    if (error_code || sidecar_bytes > kMaxSidecarBytes) {
      throw InvalidModel(model_path + ": its sidecar " + sidecar_name + " is unreadable or larger than 16 MiB");
    }
    std::ifstream in(sidecar, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    json::Value root;
    try {
      root = json::parse(text);
    } catch (const json::ParseError& error) {
      throw InvalidModel(model_path + ": its sidecar " + sidecar_name + " is not valid JSON (" + error.what() + ")");
    }
    if (!root.is_object()) throw InvalidModel(model_path + ": its sidecar " + sidecar_name + " is not a JSON object");
    if (const json::Value* digest = root.find("sha256"); digest != nullptr) {
      std::string text_digest = digest->is_string() ? digest->as_string() : "";
      if (!normalise_digest(text_digest)) {
        throw InvalidModel(model_path + ": its sidecar " + sidecar_name + " has a sha256 that is not 64 hex digits");
      }
      expected_digest = text_digest;
    }
    if (const json::Value* size = root.find("size_bytes"); size != nullptr) {
      if (!size->is_number() || size->as_number() < 0 || size->as_number() != std::floor(size->as_number())) {
        throw InvalidModel(model_path + ": its sidecar " + sidecar_name + " has a size_bytes that is not an integer >= 0");
      }
      expected_size = static_cast<std::uintmax_t>(size->as_number());
    }
  }
  if (require_sidecar && !expected_digest) {
    throw InvalidModel(model_path + " has no sidecar " + sidecar_name +
                       " recording its sha256, and require_sidecar is set: its integrity cannot be checked");
  }
  if (expected_size) {  // before hashing: a truncated or extended file is named as such
    const std::uintmax_t actual = fs::file_size(model, error_code);
    if (!error_code && actual != *expected_size) {
      throw InvalidModel(model_path + " is " + std::to_string(actual) + " bytes but its sidecar " + sidecar_name +
                         " says " + std::to_string(*expected_size) + ": truncated, extended or replaced");
    }
  }
  Integrity integrity;
  integrity.sha256 = file_sha256(model_path);
  if (expected_digest) {
    if (integrity.sha256 != *expected_digest) {
      throw InvalidModel(model_path + " does not match its sidecar " + sidecar_name + ": sha256 " + integrity.sha256 +
                         " != " + *expected_digest);
    }
    integrity.verified = true;
  }
  return integrity;
}

void check_model_file(const std::string& model_path) {
  namespace fs = std::filesystem;
  std::error_code error_code;
  if (!fs::exists(model_path, error_code)) throw ModelNotFound("model file not found: " + model_path);
  if (!fs::is_regular_file(model_path, error_code)) throw InvalidModel(model_path + " is not a regular file");
}

// What the model returned must fit the artefact: labels index class_names, and a box or score
// that is NaN or inf is a broken model, not an answer.
void check_outputs(const Detections& found, const Metadata& metadata) {
  const auto classes = static_cast<std::int64_t>(metadata.class_names.size());
  for (std::int64_t label : found.labels) {
    if (label < 0 || label >= classes) {
      throw InferenceError("the model returned label " + std::to_string(label) + ", outside the artefact's " +
                           std::to_string(classes) + " class_names");
    }
  }
  for (float score : found.scores) {
    if (!(score >= 0.0f && score <= 1.0f)) {
      // json::number writes NaN and inf as null
      const std::string text = std::isfinite(score) ? json::number(score) : std::isnan(score) ? "nan" : "inf";
      throw InferenceError("the model returned score " + text + ", outside [0, 1]");
    }
  }
  for (float value : found.boxes) {
    if (!std::isfinite(value)) throw InferenceError("the model returned a box with a non-finite coordinate");
  }
}

}  // namespace

// ---- backend selection ---------------------------------------------------------------

std::unique_ptr<Backend> make_backend(const std::string& model_path, const Metadata& metadata, const Options& options) {
  if (metadata.format == kTorchScriptFormat) return std::make_unique<TorchScriptBackend>(model_path, metadata, options);
  if (metadata.format == kAotiFormat) return std::make_unique<AotiBackend>(model_path, metadata, options);
  throw InvalidModel(model_path + ": no backend for format '" + metadata.format + "'");
}

// ---- public API ----------------------------------------------------------------------

Metadata read_metadata(const std::string& model_path) {
  check_model_file(model_path);
  std::string text;
  bool found = false;
  try {
    // An artefact is a zip archive (torch.jit.save); read metadata.json alone, before
    // paying for loading the model, and so that the metadata can choose the backend.
    caffe2::serialize::PyTorchStreamReader reader(model_path);
    if (reader.hasRecord(kMetadataRecord)) {
      auto [data, size] = reader.getRecord(kMetadataRecord);
      text.assign(static_cast<const char*>(data.get()), size);
      found = true;
    }
  } catch (const std::exception& error) {
    // torch's message goes on to guess at causes ("...likely corrupted..."): keep the facts.
    std::string reason = summarise(error);
    reason = reason.substr(0, reason.find(". "));
    throw InvalidModel(model_path + " is not a TorchScript artefact or AOTInductor package (not a PyTorch zip archive: " +
                       reason + ")");
  }
  if (!found) {
    throw InvalidModel(model_path + " carries no metadata.json: not an artefact exported by detr_deploy "
                       "(python -m detr_deploy.export; --format aoti for .pt2)");
  }
  return parse_metadata(text, model_path);
}

void validate_image(const ImageView& image, std::int64_t max_side, std::int64_t min_side) {
  if (image.height <= 0 || image.width <= 0) {
    throw InvalidInput("image is empty: " + std::to_string(image.height) + "x" + std::to_string(image.width));
  }
  if (image.height > max_side || image.width > max_side) {
    throw InvalidInput("image " + std::to_string(image.height) + "x" + std::to_string(image.width) +
                       " exceeds the limit of " + std::to_string(max_side) + " pixels per side (the artefact's input.max_side)");
  }
  if (image.height < min_side || image.width < min_side) {
    throw InvalidInput("image " + std::to_string(image.height) + "x" + std::to_string(image.width) +
                       " is below this artefact's minimum of " + std::to_string(min_side) +
                       " pixels per side (input.min_side: torch.export's dynamic-size range)");
  }
  if (image.data == nullptr) throw InvalidInput("image data is a null pointer");
}

struct Detector::Impl {
  std::string path;
  Metadata metadata;
  Integrity integrity;
  std::unique_ptr<Backend> backend;
};

Detector::Detector(const std::string& model_path, Options options) : impl_(std::make_unique<Impl>()) {
  if (options.num_threads < 0 || options.num_threads > max_num_threads()) {
    throw InvalidInput("num_threads must be in 1.." + std::to_string(max_num_threads()) +
                       " (4 x this machine's CPUs), or 0 for torch's default; got " +
                       std::to_string(options.num_threads));
  }
  impl_->path = model_path;
  check_model_file(model_path);
  // the bytes first: a damaged file is named as such, not by whatever part of it fails to parse
  impl_->integrity = check_integrity(model_path, options.require_sidecar);
  impl_->metadata = read_metadata(model_path);
  if (options.num_threads > 0) at::set_num_threads(options.num_threads);
  impl_->backend = make_backend(model_path, impl_->metadata, options);
}

Detector::~Detector() = default;
Detector::Detector(Detector&&) noexcept = default;
Detector& Detector::operator=(Detector&&) noexcept = default;

Detections Detector::detect(const ImageView& image, std::optional<double> score_threshold) const {
  double threshold = resolve_threshold(score_threshold, impl_->metadata);
  validate_image(image, impl_->metadata.max_side, impl_->metadata.min_side);
  check_resized(image, impl_->metadata);
  Detections found = impl_->backend->run(image, threshold);
  check_outputs(found, impl_->metadata);
  return found;
}

std::vector<Detections> Detector::detect_batch(const std::vector<ImageView>& images,
                                               std::optional<double> score_threshold) const {
  double threshold = resolve_threshold(score_threshold, impl_->metadata);
  if (images.empty()) throw InvalidInput("detect_batch needs at least one image");
  for (std::size_t index = 0; index < images.size(); ++index) {
    try {
      validate_image(images[index], impl_->metadata.max_side, impl_->metadata.min_side);
      check_resized(images[index], impl_->metadata);
    } catch (const InvalidInput& error) {
      throw InvalidInput("image " + std::to_string(index) + ": " + error.what());
    }
  }
  std::vector<Detections> found = impl_->backend->run_batch(images, threshold);
  for (const Detections& one : found) check_outputs(one, impl_->metadata);
  return found;
}

const Metadata& Detector::metadata() const { return impl_->metadata; }
const std::string& Detector::model_path() const { return impl_->path; }
const std::string& Detector::sha256() const { return impl_->integrity.sha256; }
bool Detector::verified() const { return impl_->integrity.verified; }
std::string Detector::backend_name() const { return impl_->backend->name(); }
bool Detector::optimized() const { return impl_->backend->optimized(); }

std::string libtorch_version() { return TORCH_VERSION; }
int num_threads() { return at::get_num_threads(); }
int max_num_threads() { return 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

std::string file_sha256(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error_code;
  if (!fs::exists(path, error_code)) throw ModelNotFound("file not found: " + path);
  if (!fs::is_regular_file(path, error_code)) throw InvalidInput(path + " is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  std::vector<char> buffer(1 << 20);
  Sha256 hash;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    hash.update(buffer.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) throw Error("reading " + path + " failed");
  return hash.hex_digest();
}

}  // namespace detr
