// The personalisation context: built per recipient from the fields their affinity allows
// and nothing else, so a template cannot reach what is not there. The level used is the
// lower of the recorded one and the cap the person set.
import { AFFINITY_LEVELS, type AffinityLevel, affinityRank, effectiveAffinity } from '../domain.js';

/** Which subscriber fields each level adds to the context. */
const FIELDS_FROM: Record<AffinityLevel, readonly string[]> = {
  confirmed: ['email'],
  known: ['first_name', 'last_name'],
  engaged: ['attributes'],
};

export interface Recipient {
  email: string;
  first_name: string | null;
  last_name: string | null;
  attributes: Record<string, unknown>;
  /** The latest recorded level, if any (see effectiveAffinity). */
  affinity: AffinityLevel | null;
  affinity_cap: AffinityLevel | null;
}

export interface PersonalisationContext {
  level: AffinityLevel;
  context: Record<string, unknown>;
  /** Fields held about the person that their level kept out of the mail. */
  withheld: string[];
}

const holds = (value: unknown) =>
  value !== null && value !== undefined && value !== '' && !(typeof value === 'object' && Object.keys(value as object).length === 0);

export function personalise(recipient: Recipient, shared: Record<string, unknown>): PersonalisationContext {
  const level = effectiveAffinity(recipient.affinity, recipient.affinity_cap);
  const subscriber: Record<string, unknown> = {};
  const withheld: string[] = [];
  for (const candidate of AFFINITY_LEVELS) {
    for (const field of FIELDS_FROM[candidate]) {
      const value = recipient[field as keyof Recipient];
      if (affinityRank(candidate) <= affinityRank(level)) subscriber[field] = value ?? undefined;
      else if (holds(value)) withheld.push(`subscriber.${field}`);
    }
  }
  return { level, withheld, context: { ...shared, subscriber, affinity: level } };
}
