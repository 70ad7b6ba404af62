/// <reference path="./llmos-plugin-types.d.ts" />
declare module 'llmos:plugin/inference@0.1.1' {
  /**
   * One embedding vector per text.
   */
  export function embed(model: string, texts: Array<string>): Array<Float32Array>;
  /**
   * Labels per text, highest score first.
   */
  export function classify(model: string, texts: Array<string>): Array<Array<LabelScore>>;
  /**
   * Named entities (token classification) of one text.
   */
  export function entities(model: string, text: string): Array<Entity>;
  /**
   * Text generation: the greedy continuation of `prompt` (raw text, no chat template;
   * the same prompt gives the same text), at most `max-tokens` tokens (at least 1, fewer
   * when the model's context or the call's `max_inference_tokens` leave less room after
   * the prompt). Needs `inference:<model>`. Errors: `denied` without the capability,
   * `not-found` for an unknown model, `invalid-input` for a model that does not generate
   * or a prompt that fills the context, `limit-exceeded` when the plugin call's deadline
   * passes (the generation is cancelled) or its token quota is spent, `unavailable` when
   * the model is busy. Hosts without a generative runtime (llmos 0.1) return
   * `unavailable` after the capability check; plugins should handle that and degrade.
   */
  export function generate(model: string, prompt: string, maxTokens: number): string;
  export type Error = import('llmos:plugin/types@0.1.1').Error;
  export interface LabelScore {
    label: string,
    score: number,
  }
  export interface Entity {
    /**
     * e.g. `PER`, `ORG`, `LOC`, `EMAIL`.
     */
    label: string,
    /**
     * Byte offsets into the input text (UTF-8), end exclusive.
     */
    start: number,
    end: number,
    text: string,
    score: number,
  }
}
