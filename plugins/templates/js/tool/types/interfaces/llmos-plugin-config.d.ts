declare module 'llmos:plugin/config@0.1.1' {
  /**
   * The value of `key`, or none when it is neither set nor has a default.
   */
  export function get(key: string): string | undefined;
  /**
   * Every key with a value, sorted by key.
   */
  export function getAll(): Array<[string, string]>;
}
