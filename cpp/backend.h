// Internal: the interface between the Detector and the engine that runs the model.
//
// Today there is one backend, TorchScript (detr_core.cpp). The artefact's metadata
// "format" picks the backend in make_backend(), so a later chapter can add an AOTInductor
// (.pt2) backend as one more class and one more line there, without touching the
// Detector, the Python module or the CLI.
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
