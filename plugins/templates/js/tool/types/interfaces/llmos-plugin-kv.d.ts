/// <reference path="./llmos-plugin-types.d.ts" />
declare module 'llmos:plugin/kv@0.1.1' {
  export function get(key: string): Uint8Array | undefined;
  export function set(key: string, value: Uint8Array): void;
  export { _delete as delete };
  function _delete(key: string): void;
  /**
   * Keys that start with `prefix`, sorted, at most 1000.
   */
  export function listKeys(prefix: string): Array<string>;
  export type Error = import('llmos:plugin/types@0.1.1').Error;
}
