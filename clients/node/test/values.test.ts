// The JS <-> Value rules, without a server.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Int64, Json, Tensor, float64, int64, json } from "../src/index";
import { fromJsonPb, fromLong, fromValue, toValue } from "../src/values";

describe("values", () => {
  it("encodes plain JS values by their JS type; numbers are floats", () => {
    assert.deepEqual(toValue(1.5), { float_value: 1.5 });
    assert.deepEqual(toValue(3), { float_value: 3 });
    assert.deepEqual(toValue("a"), { string_value: "a" });
    assert.deepEqual(toValue(false), { bool_value: false });
    assert.deepEqual(toValue(null), { json_value: { nullValue: "NULL_VALUE" } });
    assert.deepEqual(toValue([1, "x"]), {
      json_value: { listValue: { values: [{ numberValue: 1 }, { stringValue: "x" }] } },
    });
    assert.deepEqual(toValue({ k: true }), { json_value: { structValue: { fields: { k: { boolValue: true } } } } });
    assert.deepEqual(toValue(undefined), {});
  });

  it("encodes integer intent as int_value: bigint, Int64, or the int hint", () => {
    assert.deepEqual(toValue(7n), { int_value: "7" });
    assert.deepEqual(toValue(int64(-2)), { int_value: "-2" });
    assert.deepEqual(toValue(new Int64("9223372036854775807")), { int_value: "9223372036854775807" });
    assert.deepEqual(toValue(3, "int"), { int_value: "3" });
    assert.deepEqual(toValue(3.5, "int"), { float_value: 3.5 }, "a fraction is left for the server to reject");
    assert.deepEqual(toValue(float64(3)), { float_value: 3 });
    assert.throws(() => int64(1.5), TypeError);
    assert.throws(() => int64(2n ** 63n), RangeError);
  });

  it("encodes Json(x) and the json hint as json_value whatever x is", () => {
    assert.deepEqual(toValue(json("fast")), { json_value: { stringValue: "fast" } });
    assert.deepEqual(toValue(new Json(2)), { json_value: { numberValue: 2 } });
    assert.deepEqual(toValue(2, "json"), { json_value: { numberValue: 2 } });
    assert.throws(() => toValue({ bad: NaN }), TypeError);
    assert.throws(() => toValue({ d: new Date() } as never), TypeError);
  });

  it("decodes int64 as a number when safe, else a bigint", () => {
    assert.equal(fromValue({ int_value: "42", kind: "int_value" }), 42);
    assert.equal(fromValue({ int_value: "9007199254740993", kind: "int_value" }), 9007199254740993n);
    assert.equal(fromLong("-9007199254740991"), -9007199254740991);
    assert.equal(fromValue({ float_value: 0, kind: "float_value" }), 0);
    assert.equal(fromValue({ bool_value: false, kind: "bool_value" }), false);
    assert.equal(fromValue({}), undefined);
    assert.equal(fromValue(null), undefined);
  });

  it("decodes JSON values to plain JS", () => {
    const wire = toValue({ a: [1, 2.5, null, { b: "c" }], t: true });
    assert.deepEqual(fromJsonPb(wire.json_value), { a: [1, 2.5, null, { b: "c" }], t: true });
  });

  it("round-trips tensors", () => {
    const t = Tensor.fromArray([[1, 2, 3], [4, 5, 6]], "float32");
    assert.deepEqual(t.shape, [2, 3]);
    assert.equal(t.data.byteLength, 24);
    const wire = toValue(t);
    assert.deepEqual(wire.tensor_value?.shape, ["2", "3"]);
    const back = fromValue({ ...wire, kind: "tensor_value" });
    assert.ok(back instanceof Tensor);
    assert.deepEqual(back.values(), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(Tensor.fromArray([1, 2], "int64").values(), [1n, 2n]);
  });
});
