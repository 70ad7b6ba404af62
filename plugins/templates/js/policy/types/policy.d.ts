/// <reference path="./interfaces/llmos-plugin-config.d.ts" />
/// <reference path="./interfaces/llmos-plugin-inference.d.ts" />
/// <reference path="./interfaces/llmos-plugin-kv.d.ts" />
/// <reference path="./interfaces/llmos-plugin-log.d.ts" />
/// <reference path="./interfaces/llmos-plugin-secrets.d.ts" />
/// <reference path="./interfaces/llmos-plugin-types.d.ts" />
declare module 'llmos:plugin/policy@0.1.0' {
  export type Request = import('llmos:plugin/types@0.1.0').Request;
  export type Response = import('llmos:plugin/types@0.1.0').Response;
  export type RequestVerdict = import('llmos:plugin/types@0.1.0').RequestVerdict;
  export type ResponseVerdict = import('llmos:plugin/types@0.1.0').ResponseVerdict;
  export type Error = import('llmos:plugin/types@0.1.0').Error;
  export type * as LlmosPluginConfig010 from 'llmos:plugin/config@0.1.0'; // import llmos:plugin/config@0.1.0
  export type * as LlmosPluginInference010 from 'llmos:plugin/inference@0.1.0'; // import llmos:plugin/inference@0.1.0
  export type * as LlmosPluginKv010 from 'llmos:plugin/kv@0.1.0'; // import llmos:plugin/kv@0.1.0
  export type * as LlmosPluginLog010 from 'llmos:plugin/log@0.1.0'; // import llmos:plugin/log@0.1.0
  export type * as LlmosPluginSecrets010 from 'llmos:plugin/secrets@0.1.0'; // import llmos:plugin/secrets@0.1.0
  export type * as LlmosPluginTypes010 from 'llmos:plugin/types@0.1.0'; // import llmos:plugin/types@0.1.0
  export function checkRequest(request: Request): RequestVerdict;
  export function checkResponse(response: Response): ResponseVerdict;
  export type Result<T, E> = { tag: 'ok', val: T } | { tag: 'err', val: E };
}
