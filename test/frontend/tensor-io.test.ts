import { afterAll, expect, test } from "vitest";
import { fromNumbers, type Tensor } from "../../src/core/tensor.js";
import { npyBytes, readTensorFile, tensorToProto } from "../../src/frontend/onnx/tensor-io.js";
import { tempDir } from "../helpers/onnx-builder.js";

const dir = tempDir();
afterAll(() => dir.cleanup());

const cases: [string, Tensor][] = [
  ["float32", fromNumbers("float32", [2, 3], [1.5, -2, 0, 3.25, 1e-7, -0])],
  ["int64", { dtype: "int64", shape: [4], data: new BigInt64Array([-9223372036854775808n, -1n, 0n, 9223372036854775807n]) }],
  ["float32 scalar", fromNumbers("float32", [], [42])],
  ["uint8", fromNumbers("uint8", [3, 1], [0, 7, 255])],
  ["bool", fromNumbers("bool", [2], [1, 0])],
  ["float16", fromNumbers("float16", [2], [1, -2])],
];

test.each(cases)(".npy round trip: %s", (name, t) => {
  const file = dir.write(`${name.replace(/ /g, "_")}.npy`, npyBytes(t));
  const back = readTensorFile(file);
  expect(back.dtype).toBe(t.dtype);
  expect(back.shape).toEqual(t.shape);
  expect([...back.data]).toEqual([...t.data]);
});

test(".npy header is padded to 64 bytes and names the dtype", () => {
  const bytes = Buffer.from(npyBytes(cases[1][1]));
  const hlen = bytes.readUInt16LE(8);
  expect((10 + hlen) % 64).toBe(0);
  expect(bytes.toString("latin1", 10, 10 + hlen)).toMatch(/^\{'descr': '<i8', 'fortran_order': False, 'shape': \(4,\), \}\s*\n$/);
});

test.each(cases)("TensorProto round trip: %s", (name, t) => {
  const file = dir.write(`${name.replace(/ /g, "_")}.pb`, tensorToProto(t, "the_name"));
  const back = readTensorFile(file);
  expect(back.name).toBe("the_name");
  expect(back.dtype).toBe(t.dtype);
  expect(back.shape).toEqual(t.shape);
  expect([...back.data]).toEqual([...t.data]);
});

test("a tensor view into a larger buffer round-trips only its own bytes", () => {
  const big = new Float32Array([9, 1, 2, 9]);
  const t: Tensor = { dtype: "float32", shape: [2], data: big.subarray(1, 3) };
  expect([...readTensorFile(dir.write("view.pb", tensorToProto(t))).data]).toEqual([1, 2]);
  expect([...readTensorFile(dir.write("view.npy", npyBytes(t))).data]).toEqual([1, 2]);
});

test("unreadable tensor files are clear errors", () => {
  expect(() => readTensorFile(dir.write("bad.npy", "not numpy at all"))).toThrow(/bad\.npy: not a \.npy file/);
  const full = Buffer.from(npyBytes(cases[0][1]));
  const trunc = full.subarray(0, full.length - 8);
  expect(() => readTensorFile(dir.write("trunc.npy", trunc))).toThrow(/\.npy data is truncated \(16 of 24 bytes\)/);
  expect(() => readTensorFile(`${dir.dir}/missing.pb`)).toThrow(/missing\.pb: cannot read tensor file/);
});
