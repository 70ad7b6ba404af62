/// <reference path="./llmos-plugin-types.d.ts" />
declare module 'llmos:plugin/secrets@0.1.1' {
  export function get(name: string): string;
  export type Error = import('llmos:plugin/types@0.1.1').Error;
}
