// Migration SQL is imported as text (`with { type: "text" }`) so it is embedded in the binary.
declare module "*.sql" {
  const text: string;
  export default text;
}

// The console's stylesheet, likewise embedded (`with { type: "text" }`).
declare module "*.css" {
  const text: string;
  export default text;
}
