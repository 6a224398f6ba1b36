import { conformanceSuite } from "./suite.js";

// WebAssembly SIMD128: clang for wasm32-wasi, each harness run by Node (node:wasi) through the
// artifact's `run` launcher. The whole corpus: about 40 s with two jobs on the 2-core CI machine.
conformanceSuite("wasm32");
