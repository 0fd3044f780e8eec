// Internal: the interface between the Detector and the engine that runs the model.
//
// Two backends, both in detr_core.cpp: TorchScript (.pt, torch::jit) and AOTInductor
// (.pt2, torch::inductor::AOTIModelPackageLoader). The artefact's metadata "format" picks
// one in make_backend(); the Detector, the Python module and the CLI do not know which.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "detr_core.h"

namespace detr {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual bool optimized() const = 0;
  // Images are already validated. Must be safe to call from several threads at once.
  virtual Detections run(const ImageView& image, double score_threshold) const = 0;
  virtual std::vector<Detections> run_batch(const std::vector<ImageView>& images, double score_threshold) const = 0;
};

// The backend for metadata.format; throws InvalidModel for an unknown format.
std::unique_ptr<Backend> make_backend(const std::string& model_path, const Metadata& metadata, const Options& options);

}  // namespace detr
