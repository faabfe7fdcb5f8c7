// The official @base44/sdk against Homebase's serve: every entity method Homebase serves, as a
// user from outside, then through a function that uses createClientFromRequest (as the user
// and asServiceRole). Run by tests/entities.rs, which passes SDK_URL (the SDK's entry module),
// SERVER_URL, APP_ID, USER_TOKEN and OTHER_TOKEN (two app users), with the schemas pushed (Task
// readable by its creator) and the function `tasks` deployed.
import assert from "node:assert/strict";

const { createClient } = await import(process.env.SDK_URL);
const serverUrl = process.env.SERVER_URL;
const appId = process.env.APP_ID;

const client = createClient({ serverUrl, appId, token: process.env.USER_TOKEN });
const other = createClient({ serverUrl, appId, token: process.env.OTHER_TOKEN });
const Task = client.entities.Task;

// create, get, update (a merge), the positional list and filter forms, count.
const first = await Task.create({ title: "first", n: 1, tags: ["a"] });
assert.equal(first.title, "first");
assert.equal(first.status, "open", "schema default");
assert.equal(first.created_by, "sdk@x.test");
assert.ok(first.id && first.created_date && first.updated_date);
assert.deepEqual(await Task.get(first.id), first);
const updated = await Task.update(first.id, { n: 2 });
assert.equal(updated.n, 2);
assert.equal(updated.title, "first");
const made = await Task.bulkCreate([{ title: "b", n: 3 }, { title: "c", n: 4, tags: ["a", "b"] }]);
assert.equal(made.length, 2);
assert.deepEqual((await Task.list("n", 2)).map((t) => t.title), ["first", "b"]);
assert.deepEqual((await Task.list("-n")).map((t) => t.title), ["c", "b", "first"]);
assert.deepEqual((await Task.filter({ tags: "a" }, "title")).map((t) => t.title), ["c", "first"]);
assert.deepEqual((await Task.filter({ n: { $gt: 1 } }, "-n", 1, 1)).map((t) => t.title), ["b"]);
const projected = await Task.filter({ title: "c" }, null, null, null, ["title"]);
assert.deepEqual(Object.keys(projected[0]).sort(), ["id", "title"]);
assert.equal(await Task.count({ n: { $gte: 3 } }), 2);
assert.equal(await Task.count(), 3);

// Cursor pages: list(options) and filter(query, options).
const page = await Task.list({ sort: "n", limit: 2 });
assert.deepEqual(page.items.map((t) => t.title), ["first", "b"]);
assert.equal(page.has_more, true);
const next = await Task.list({ sort: "n", limit: 2, cursor: page.next_cursor });
assert.deepEqual(next.items.map((t) => t.title), ["c"]);
assert.equal(next.has_more, false);
const filtered = await Task.filter({ tags: "a" }, { sort: "-n", limit: 10 });
assert.deepEqual(filtered.items.map((t) => t.title), ["c", "first"]);

// updateMany with operators.
assert.deepEqual(await Task.updateMany({ n: { $gte: 3 } }, { $inc: { n: 10 }, $addToSet: { tags: "many" } }), {
  success: true,
  updated: 2,
  has_more: false,
});
assert.deepEqual((await Task.filter({ tags: "many" }, "n")).map((t) => t.n), [13, 14]);
await Task.updateMany({ tags: "many" }, { $inc: { n: -10 }, $pull: { tags: "many" } });
assert.equal(await Task.count({ tags: "many" }), 0);

// Another user sees none of them (Task is readable by its creator), and cannot touch them.
assert.deepEqual(await other.entities.Task.list(), []);
await assert.rejects(other.entities.Task.get(first.id), (e) => e.status === 404);
await assert.rejects(other.entities.Task.update(first.id, { n: 9 }), (e) => e.status === 404);

// Errors arrive as Base44Error with the status and the message naming what is wrong.
await assert.rejects(Task.create({ n: 1 }), (e) => e.status === 422 && /Error in field title/.test(e.message));
await assert.rejects(Task.filter({ $where: "1" }), (e) => e.status === 400 && /\$where/.test(e.message));
await assert.rejects(Task.aggregate({ groupBy: "status" }), (e) => e.status === 501);

// deleteMany, delete.
assert.deepEqual(await Task.deleteMany({ title: "b" }), { success: true, deleted: 1 });
assert.deepEqual(await Task.delete(made[1].id), { success: true });
await assert.rejects(Task.get(made[1].id), (e) => e.status === 404);

// Inside a function: the user's client and asServiceRole.
const result = await client.functions.invoke("tasks", { title: "from the function" });
const out = result.data;
assert.equal(out.user, "sdk@x.test");
assert.equal(out.mine.created_by, "sdk@x.test", "a record the function creates as the user is the user's");
assert.equal(out.all, 1, "asServiceRole.filter sees every n >= 7 record");
assert.equal(out.visible, 2, "the user's own list: first and the new one");
assert.equal(out.counted, 1);
assert.equal(out.status, "done", "asServiceRole.update");
const otherResult = await other.functions.invoke("tasks", { title: "other's" });
assert.equal(otherResult.data.all, 2, "the service role sees both users' records");
assert.equal(otherResult.data.visible, 1, "the other user sees its own only");

console.log(JSON.stringify({ ok: true }));
