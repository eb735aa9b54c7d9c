// A small task for the job tests (the same one the Python job tests ship): keyword -> topic.
// Under the offline LM an unoptimized module answers from a hash of its inputs (almost never a
// topic), while a module holding the training examples as demos answers with the topic of the
// training text sharing the most words: right on every held-out example.
import type { Example } from "../src/index";

export const SIGNATURE = "text -> topic";

const TOPICS: Record<string, string[]> = {
  sports: [
    "the striker scored a goal in the football match",
    "the team won the basketball game in overtime",
    "the tennis player served an ace at the tournament",
  ],
  weather: [
    "heavy rain and thunder storm expected tomorrow",
    "sunny skies with a warm breeze this afternoon",
    "snow and freezing wind forecast for the weekend",
  ],
  cooking: [
    "bake the bread dough in a hot oven",
    "simmer the tomato sauce with garlic and basil",
    "whisk the eggs with sugar for the cake batter",
  ],
  finance: [
    "the stock market fell as interest rates rose",
    "the bank raised its savings account interest",
    "investors sold shares after weak quarterly earnings",
  ],
};

const HELD_OUT_TOPICS: Record<string, string[]> = {
  sports: ["the goalkeeper saved a penalty in the football match", "fans cheered the team game"],
  weather: ["thunder storm and rain tonight", "freezing snow forecast with wind"],
  cooking: ["bake the cake in the oven", "simmer garlic in the sauce"],
  finance: ["interest rates and the stock market", "shares fell after earnings"],
};

/** Topics interleaved, so that any prefix covers several of them. */
function examples(table: Record<string, string[]>): Example[] {
  const rows: { rank: number; text: string; topic: string }[] = [];
  for (const [topic, texts] of Object.entries(table)) texts.forEach((text, rank) => rows.push({ rank, text, topic }));
  rows.sort((a, b) => a.rank - b.rank);
  return rows.map(({ text, topic }) => ({ inputs: { text }, labels: { topic } }));
}

export const TRAINSET = examples(TOPICS);
export const HELD_OUT = examples(HELD_OUT_TOPICS);
