// IMAPFuzz: a libFuzzer target. Built with `--sanitize=fuzzer`, SwiftPM compiles this target as a library
// and libFuzzer supplies `main`, calling LLVMFuzzerTestOneInput in FuzzTarget.swift. This file must
// therefore hold no top-level code; a normal build yields a binary that does nothing and exits 0.
// Run it with perf/fuzz/run-fuzz.sh SECONDS (see perf/fuzz/README.md).
