import { conformanceSuite } from "./suite.js";

// aarch64 (NEON) code, cross-compiled and run under qemu-aarch64.
conformanceSuite("rpi4");
