/// <reference path="./llmos-plugin-types.d.ts" />
declare module 'llmos:plugin/data@0.1.1' {
  /**
   * The `top-k` chunks (1 to 100) of `collection` nearest in meaning to `query` (embedded
   * with the collection's model), best first. `invalid-input` for an empty query or a
   * `top-k` out of range.
   */
  export function search(collection: string, query: string, topK: number): Array<Hit>;
  export type Error = import('llmos:plugin/types@0.1.1').Error;
  /**
   * One chunk found by a search.
   */
  export interface Hit {
    /**
     * The id of the document the chunk belongs to.
     */
    document: string,
    /**
     * The chunk's id (`<document>:<seq>`).
     */
    chunk: string,
    /**
     * The chunk's text.
     */
    text: string,
    /**
     * Cosine similarity to the query, in [-1, 1].
     */
    score: number,
    /**
     * The document's metadata as a JSON object.
     */
    metadataJson: string,
  }
}
