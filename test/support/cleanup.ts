// Preloaded by bunfig.toml: an afterAll here runs once, after every test file.
import { afterAll } from "bun:test";
import { removeTempDirs } from "./server.ts";

afterAll(removeTempDirs);
