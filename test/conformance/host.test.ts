import { conformanceSuite } from "./suite.js";

// Host runs with AddressSanitizer and UBSan: the same check as `make conformance`, plus no UB.
conformanceSuite("host", { sanitize: true });
