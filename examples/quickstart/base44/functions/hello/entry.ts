// POST {"name": "Ada"} → {"message": "Hello, Ada!"}. The classic Deno.serve shape.
Deno.serve(async (req) => {
  const body = req.headers.get("content-type")?.includes("json") ? await req.json().catch(() => ({})) : {};
  const name = typeof body.name === "string" && body.name ? body.name : "world";
  console.log(`greeting ${name}`);
  return Response.json({ message: `Hello, ${name}!` });
});
