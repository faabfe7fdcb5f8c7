// The `base44:runtime` module that functions import. It forwards to the bridge that the Homebase
// worker host installs on `globalThis.Base44` before the function is loaded.
// deno-lint-ignore no-explicit-any
const bridge = (globalThis as any).Base44;

export const secrets = {
  /** The value of a secret, or `undefined` when it is not set. */
  get(name: string): string | undefined {
    return bridge.secrets.get(name);
  },
};

/** Keeps the worker busy with `promise` after the response has been sent; returns the promise. */
export function waitUntil<T>(promise: Promise<T>): Promise<T> {
  return bridge.waitUntil(promise);
}

export default { secrets, waitUntil };
