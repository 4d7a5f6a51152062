/**
 * Every error the SDK throws is a {@link KmsError}: `code` names the condition (stable, for
 * programs), `message` says what happened and `hint` what to do about it, as the `kms` CLI's
 * messages do. Each area of the SDK has its own subclass, so `instanceof` narrows by area.
 */
export class KmsError extends Error {
  /** A stable machine-readable name of the condition, e.g. `NotEnoughCFrags`. */
  readonly code: string;
  /** What the caller can do about it, when there is something to do. */
  readonly hint: string | undefined;

  constructor(code: string, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(options.hint ? `${message}: ${options.hint}` : message, { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }
}

/** Malformed input: a byte string, a file or a JSON document that does not parse. */
export class FormatError extends KmsError {}
