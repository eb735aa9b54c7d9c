// Asserting that a call fails with a given BridgeError class.
import assert from "node:assert/strict";

import { BridgeError } from "../src/index";

/** Assert `promise` rejects with a BridgeError of class `cls`; returns the error. */
export async function rejectsWith<E extends BridgeError>(promise: Promise<unknown>, cls: new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.ok(err instanceof BridgeError);
    assert.ok(err instanceof Error);
    return err;
  }
  assert.fail(`expected ${cls.name}, but the call succeeded`);
}
