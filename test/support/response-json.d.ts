// In tests a JSON body is whatever the assertions make of it: typed `any` instead of `unknown`.
interface Response {
  json(): Promise<any>;
}
interface Body {
  json(): Promise<any>;
}
