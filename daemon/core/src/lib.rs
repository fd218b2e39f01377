//! brummer-core: the concurrency core of brummerd, free of any async runtime so that it can
//! be model-checked (loom/shuttle under `--cfg brummer_loom`) and benchmarked on its own.
