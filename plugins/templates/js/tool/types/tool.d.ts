/// <reference path="./interfaces/llmos-plugin-config.d.ts" />
/// <reference path="./interfaces/llmos-plugin-data.d.ts" />
/// <reference path="./interfaces/llmos-plugin-inference.d.ts" />
/// <reference path="./interfaces/llmos-plugin-kv.d.ts" />
/// <reference path="./interfaces/llmos-plugin-log.d.ts" />
/// <reference path="./interfaces/llmos-plugin-secrets.d.ts" />
/// <reference path="./interfaces/llmos-plugin-types.d.ts" />
declare module 'llmos:plugin/tool@0.1.1' {
  export type ToolSpec = import('llmos:plugin/types@0.1.1').ToolSpec;
  export type ToolCall = import('llmos:plugin/types@0.1.1').ToolCall;
  export type Error = import('llmos:plugin/types@0.1.1').Error;
  export type * as LlmosPluginConfig011 from 'llmos:plugin/config@0.1.1'; // import llmos:plugin/config@0.1.1
  export type * as LlmosPluginData011 from 'llmos:plugin/data@0.1.1'; // import llmos:plugin/data@0.1.1
  export type * as LlmosPluginInference011 from 'llmos:plugin/inference@0.1.1'; // import llmos:plugin/inference@0.1.1
  export type * as LlmosPluginKv011 from 'llmos:plugin/kv@0.1.1'; // import llmos:plugin/kv@0.1.1
  export type * as LlmosPluginLog011 from 'llmos:plugin/log@0.1.1'; // import llmos:plugin/log@0.1.1
  export type * as LlmosPluginSecrets011 from 'llmos:plugin/secrets@0.1.1'; // import llmos:plugin/secrets@0.1.1
  export type * as LlmosPluginTypes011 from 'llmos:plugin/types@0.1.1'; // import llmos:plugin/types@0.1.1
  /**
  * The tools this component offers. Called once when the plugin is installed or
  * upgraded (the host keeps the list); it must return at least one tool and always the
  * same list.
  */
  export function tools(): Array<ToolSpec>;
  /**
  * Runs one tool. The result is text for the model (often JSON); an error is shown to
  * the model as the tool's answer (`invalid-input` when the arguments make no sense,
  * `denied` when a capability is missing), never as a failed request.
  */
  export function invoke(call: ToolCall): string;
  export type Result<T, E> = { tag: 'ok', val: T } | { tag: 'err', val: E };
}
