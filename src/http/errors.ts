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

/** The schema's own error text when it has one, else the JSON pointer of what failed. */
function describeInvalid(error: ValidationError): string {
  if (typeof error.customError === "string") return error.customError;
  const parameter = error.valueError?.path.split("/")[1];
  return parameter ? `invalid parameter: ${parameter}` : "invalid parameter";
}

/** Pages for people under `prefix` (the console): its errors as HTML, same status and message. */
export interface ErrorPages {
  prefix: string;
  render: (status: number, message: string) => Response;
}

interface ErrorHandlingOptions {
  /** Called with errors nobody meant to throw; the client only sees "internal_error". */
  onUnexpected: (error: unknown) => void;
  /** Called with every error answer, for the request log. */
  onAnswer: (request: Request, status: number, reason: string) => void;
  pages?: ErrorPages;
}

function answer({ code, error }: { code: unknown; error: unknown }, onUnexpected: (error: unknown) => void): HttpError {
  if (error instanceof HttpError) return error;
  if (code === "NOT_FOUND") return new HttpError(404, "not_found", "no such path");
  if (code === "VALIDATION" && error instanceof ValidationError) return new HttpError(400, "invalid_parameter", describeInvalid(error));
  if (code === "PARSE") return new HttpError(400, "invalid_body", "body could not be parsed");
  onUnexpected(error);
  return new HttpError(500, "internal_error", "internal error");
}

export const errorHandling = ({ onUnexpected, onAnswer, pages }: ErrorHandlingOptions) =>
  // Destructured, not `(context)`: Elysia reads a hook's parameters to decide what to prepare for
  // every request, and a whole context made it parse cookies on every delivery.
  new Elysia({ name: "error-handling" }).onError({ as: "global" }, ({ code, error, request }) => {
    const { status, reason, message, headers } = answer({ code, error }, onUnexpected);
    onAnswer(request, status, error instanceof HttpError ? error.reason : String(code));
    if (pages !== undefined && new URL(request.url).pathname.startsWith(pages.prefix)) {
      const page = pages.render(status, message);
      for (const [name, value] of Object.entries(headers)) page.headers.set(name, value);
      return page;
    }
    return errorResponse(status, reason, message, headers);
  });
