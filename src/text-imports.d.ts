// Migration SQL is imported as text (`with { type: "text" }`) so it is embedded in the binary.
declare module "*.sql" {
  const text: string;
  export default text;
}

// The console's stylesheet and icon, likewise embedded (`with { type: "text" }`).
declare module "*.css" {
  const text: string;
  export default text;
}
declare module "*.svg" {
  const text: string;
  export default text;
}
