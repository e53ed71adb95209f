"""The first module grading.forkserver's server imports: from here on in that process, torch.cuda.is_available()
and device_count() ask NVML instead of the CUDA driver (PYTORCH_NVML_BASED_CUDA_CHECK), so that a preloaded
library that asks on import (transformers and accelerate may) leaves the driver untouched, and the topics forked
from the server can still start CUDA. Only the server's environment: each forked topic gets its own
(grading.forkserver._child)."""
import os

os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
