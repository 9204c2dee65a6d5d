// An uncaught exception in a Node app with the SDK: it is stored before the
// process exits, and Node's default behaviour (print, exit status 1) is kept.
//
//   ERRORREPLAY_ADDRESS=HOST:PORT ERRORREPLAY_SERVICE=svc node dist/test/sdk_uncaught.js [rejection]
import { init } from "../src/index.js";

init(); // everything from ERRORREPLAY_* variables

function chargeCard(): never {
  throw new Error("card processor returned HTTP 502");
}

if (process.argv[2] === "rejection") {
  void Promise.reject(new Error("inventory lookup rejected"));
} else {
  setTimeout(chargeCard, 10);
}
