// console.js is the browser's script, imported as text (`with { type: "text" }`) to be embedded in
// the binary and served at /console/assets/console.js; to TypeScript it is that text.
declare const text: string;
export default text;
