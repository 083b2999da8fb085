// A tiny TCP tool for the netns tests, run with node inside a namespace.
//   node tcp-echo.mjs serve <port>                 listen on [::]:port; greet "hello\n", then echo
//   node tcp-echo.mjs probe <host> <port> [holdMs] connect (3 s deadline), read the greeting, and
//        for holdMs send a line every 200 ms counting the echoes; prints one JSON line:
//        { result: "connected" | "timeout" | "error", code?, sent, received, echoTimes } (epoch ms)
import net from "node:net";

const [mode, ...args] = process.argv.slice(2);

if (mode === "serve") {
  const port = Number(args[0]);
  net
    .createServer((socket) => {
      socket.on("error", () => {});
      socket.write("hello\n");
      socket.pipe(socket);
    })
    .listen(port, "::", () => console.log(`listening on ${port}`));
} else if (mode === "probe") {
  const [host, port, holdText] = args;
  const holdMs = Number(holdText ?? 0);
  const report = (fields) => {
    console.log(JSON.stringify(fields));
    process.exit(0);
  };
  let buffered = "";
  let greeted = false;
  let sent = 0;
  let received = 0;
  // When each echo came (the machine's clock), so a test can tell what still worked after an event.
  const echoTimes = [];
  const socket = net.connect({ host, port: Number(port) });
  const deadline = setTimeout(() => report({ result: "timeout", sent, received, echoTimes }), 3000);
  socket.on("error", (err) => report({ result: "error", code: err.code, sent, received, echoTimes }));
  socket.on("data", (chunk) => {
    buffered += chunk.toString();
    const lines = buffered.split("\n");
    buffered = lines.pop();
    for (const line of lines) {
      if (!greeted && line === "hello") {
        greeted = true;
        clearTimeout(deadline);
        if (holdMs === 0) report({ result: "connected", sent, received, echoTimes });
        const ticker = setInterval(() => {
          socket.write(`${++sent}\n`);
        }, 200);
        setTimeout(() => {
          clearInterval(ticker);
          // Time for the last echo.
          setTimeout(() => report({ result: "connected", sent, received, echoTimes }), 500);
        }, holdMs);
      } else if (greeted) {
        received++;
        echoTimes.push(Date.now());
      }
    }
  });
} else {
  console.error("usage: tcp-echo.mjs serve <port> | probe <host> <port> [holdMs]");
  process.exit(2);
}
