// Streams the time as server-sent events, three ticks a second apart.
// The modern shape: a default-exported handler.
export default function (_req: Request): Response {
  const encoder = new TextEncoder();
  let timer: number | undefined;
  const body = new ReadableStream({
    start(controller) {
      let ticks = 0;
      const tick = () => {
        controller.enqueue(encoder.encode(`data: ${new Date().toISOString()}\n\n`));
        if (++ticks === 3) {
          clearInterval(timer);
          controller.close();
        }
      };
      tick();
      timer = setInterval(tick, 1000);
    },
    cancel() {
      clearInterval(timer);
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}
