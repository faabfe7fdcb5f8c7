// A nested function: its name is "orders/summary".
// POST {"orders": [{"total": 1250}, {"total": 899}]} → {"count": 2, "total": "$21.49"}
import { money } from "../../../shared/format.ts";

Deno.serve(async (req) => {
  const { orders } = await req.json().catch(() => ({ orders: undefined }));
  if (!Array.isArray(orders)) {
    return Response.json({ error: "Send {\"orders\": [{\"total\": cents}, …]}" }, { status: 400 });
  }
  const cents = orders.reduce((sum: number, order: { total?: number }) => sum + (order.total ?? 0), 0);
  return Response.json({ count: orders.length, total: money(cents) });
});
