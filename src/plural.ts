// Counted nouns in messages: "1 rule", "2 rules", never "1 rules".

/** `n` and the noun, singular for exactly 1 (`many` for irregular plurals). */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
