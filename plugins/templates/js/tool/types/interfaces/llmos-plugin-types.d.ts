declare module 'llmos:plugin/types@0.1.1' {
  /**
   * An error the plugin is expected to handle. Host functions return these as values;
   * a plugin never has to parse a message to learn what happened. Faults of the host
   * itself (and exhausted per-call limits: time, memory, host calls) trap instead and
   * end the call.
   */
  export type Error = ErrorDenied | ErrorNotFound | ErrorInvalidInput | ErrorLimitExceeded | ErrorUnavailable;
  /**
   * The plugin lacks a capability. The payload is the capability's name exactly as the
   * operator grants it, e.g. `kv`, `inference:minilm`, `secret:token`,
   * `http:hooks.example.com:443`. A plugin receives only the capabilities that its
   * manifest requested *and* the operator granted.
   */
  export interface ErrorDenied {
    tag: 'denied',
    val: string,
  }
  /**
   * The named thing (model, key, secret) does not exist.
   */
  export interface ErrorNotFound {
    tag: 'not-found',
    val: string,
  }
  /**
   * The arguments were rejected; the message says what is accepted.
   */
  export interface ErrorInvalidInput {
    tag: 'invalid-input',
    val: string,
  }
  /**
   * A size or count limit was reached (e.g. a kv value too large).
   */
  export interface ErrorLimitExceeded {
    tag: 'limit-exceeded',
    val: string,
  }
  /**
   * The service is temporarily unavailable or not supported by this host; the call may
   * succeed later (e.g. a model is busy) or on a newer host (e.g. text generation).
   */
  export interface ErrorUnavailable {
    tag: 'unavailable',
    val: string,
  }
  /**
   * Who is asking and for what. Every field is informational; a policy decides with it.
   */
  export interface RequestContext {
    /**
     * Unique id of this request (for logs and correlation).
     */
    requestId: string,
    /**
     * The API key's id, when the request was authenticated; never the secret itself.
     */
    keyId?: string,
    /**
     * The model the request targets, e.g. `minilm`.
     */
    model: string,
    /**
     * The task: `embed`, `classify`, `entities`, `generate` or (for tools) `tool`.
     */
    task: string,
    /**
     * The route the request came in on, e.g. `/v1/embeddings` or `cli`.
     */
    route: string,
  }
  /**
   * A request as seen by preprocessors and policies.
   */
  export interface Request {
    context: RequestContext,
    /**
     * The input texts, in order (one for most tasks, several for a batch embedding).
     */
    inputs: Array<string>,
  }
  /**
   * An inference result as seen by response policies.
   */
  export interface Response {
    context: RequestContext,
    /**
     * The (possibly preprocessed) inputs the model saw.
     */
    inputs: Array<string>,
    /**
     * The result as JSON, in the same shape the HTTP API returns it.
     */
    outputJson: string,
  }
  /**
   * A policy's decision on a request.
   */
  export type RequestVerdict = RequestVerdictAllow | RequestVerdictDeny | RequestVerdictModify;
  /**
   * Let the request through unchanged.
   */
  export interface RequestVerdictAllow {
    tag: 'allow',
  }
  /**
   * Refuse the request; the reason is shown to the client.
   */
  export interface RequestVerdictDeny {
    tag: 'deny',
    val: string,
  }
  /**
   * Let it through with these inputs instead (same count or fewer).
   */
  export interface RequestVerdictModify {
    tag: 'modify',
    val: Array<string>,
  }
  /**
   * A policy's decision on a response.
   */
  export type ResponseVerdict = ResponseVerdictAllow | ResponseVerdictDeny | ResponseVerdictModify;
  /**
   * Return the response unchanged.
   */
  export interface ResponseVerdictAllow {
    tag: 'allow',
  }
  /**
   * Withhold the response; the reason is shown to the client.
   */
  export interface ResponseVerdictDeny {
    tag: 'deny',
    val: string,
  }
  /**
   * Return this JSON instead of the model's output.
   */
  export interface ResponseVerdictModify {
    tag: 'modify',
    val: string,
  }
  /**
   * Something that happened, delivered to integrations after the response was sent.
   */
  export interface Event {
    /**
     * `inference.finished`, `request.denied`, or (later) `document.ingested`.
     */
    kind: string,
    context: RequestContext,
    /**
     * Milliseconds since the Unix epoch, when it happened.
     */
    timestampMs: bigint,
    /**
     * Event details as JSON.
     */
    payloadJson: string,
  }
  /**
   * One tool a `tool` component offers (since 0.1.1).
   */
  export interface ToolSpec {
    /**
     * `^[a-z0-9][a-z0-9_-]{0,63}$` without `__`, unique among the tools of every
     * installed plugin.
     * The model and API keys (`tools:<name>`) name the tool by it.
     */
    name: string,
    /**
     * What the tool does and when to use it, for the model (at most 1024 bytes).
     */
    description: string,
    /**
     * A JSON Schema (an object schema) of the arguments, in the subset llmos decodes
     * under (docs/generation.md, structured output): the host refuses the component at
     * install when a schema is outside it.
     */
    parametersJson: string,
  }
  /**
   * One call of a tool (since 0.1.1).
   */
  export interface ToolCall {
    /**
     * The request the call is part of; `task` is `tool`, `model` the model that asked
     * (empty when a client called the tool directly, e.g. over MCP).
     */
    context: RequestContext,
    /**
     * One of the names the component's `tools` returned.
     */
    name: string,
    /**
     * The arguments as a JSON object, already validated against the tool's schema.
     */
    argumentsJson: string,
  }
}
