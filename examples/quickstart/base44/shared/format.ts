// Code in base44/shared/ can be imported by every function.
export function money(cents: number): string {
  return `$${(cents / 100).toFixed(2)}`;
}
