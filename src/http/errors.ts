// One error shape for every answer that is not a success: {"error": "<reason>", "message": "…"}.
import { Elysia, ValidationError } from "elysia";

/** An answer the receiver means to give: status, a machine-readable reason, a short message. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function errorResponse(status: number, reason: string, message: string, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify({ error: reason, message }), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** The query parameter a validation error is about, from TypeBox's JSON pointer. */
function parameterOf(error: ValidationError): string {
  const pointer = error.valueError?.path ?? "";
  const name = pointer.split("/")[1];
  if (name) return name;
  // additionalProperties failures point at the object; the offending key is in the value.
  const schemaKeys = Object.keys((error.validator as { schema?: { properties?: object } })?.schema?.properties ?? {});
  const value = error.value;
  const extra = value && typeof value === "object" ? Object.keys(value).find((k) => !schemaKeys.includes(k)) : undefined;
  return extra ?? "parameter";
}

export interface ErrorHandlingOptions {
  /** Called with errors nobody meant to throw; the client only sees "internal_error". */
  onUnexpected: (error: unknown) => void;
}

export const errorHandling = ({ onUnexpected }: ErrorHandlingOptions) =>
  new Elysia({ name: "error-handling" }).onError({ as: "global" }, ({ code, error }) => {
    if (error instanceof HttpError) return errorResponse(error.status, error.reason, error.message, error.headers);
    if (code === "NOT_FOUND") return errorResponse(404, "not_found", "no such path");
    if (code === "VALIDATION" && error instanceof ValidationError) {
      const parameter = parameterOf(error);
      return errorResponse(400, "invalid_parameter", `invalid or unknown parameter: ${parameter}`);
    }
    if (code === "PARSE") return errorResponse(400, "invalid_body", "body could not be parsed");
    onUnexpected(error);
    return errorResponse(500, "internal_error", "internal error");
  });
