// The Liquid engines of campaign templates, and the bounds of one render. A marketer's
// template runs in the worker once per recipient, so nothing it does may stall or kill that
// process. liquidjs bounds the size of what it parses, the time of a render (checked between
// template nodes) and what its filters allocate (memoryLimit); it does not bound how often a
// loop runs nor how much text comes out: `{% for i in (1..20000000) %}` passed a memoryLimit of
// 50,000,000 and took 540 MB, past the worker's 128 MB heap. So every render here also counts
// loop iterations and output characters, and stops at a limit no mail comes near.
import { CaptureTag, Context, type Emitter, ForTag, Liquid, TablerowTag, type TagToken, type Template, type Token, TokenKind, toValueSync } from 'liquidjs';
import { type BodyPieces, EncodedRun } from '../mail/mime.js';

export const RENDER_LIMITS = {
  /**
   * Characters of one template, the compiled HTML included: MJML's HTML is up to 11 times its
   * source, and a mail past 102 kB of HTML is cut off by Gmail anyway.
   */
  parseLimit: 1_000_000,
  /** Units liquidjs counts per template: array elements (a range's too) and characters its filters make. */
  memoryLimit: 1_000_000,
  /**
   * Milliseconds for one mail, its subject, HTML and text together: how long one may hold the
   * event loop (three templates of 2 s each held it 5 s and more). A mail takes about 0.2 ms
   * warm; first renders and GC pauses took up to 77 ms on a busy 2-core machine.
   */
  mailMs: 1_000,
  /** Loop iterations of one mail, nested ones counted each time: no mail lists more. */
  iterations: 10_000,
  /** Characters one mail may put out, `{% capture %}` included: ten times a long newsletter's HTML. */
  outputChars: 2_000_000,
  /**
   * What the smallest write costs in outputChars. V8 joins strings as a rope of 32-byte nodes:
   * 2,000,000 writes of one to four characters held 63 MB, half the worker's heap.
   */
  writeChars: 16,
} as const;

// Campaign Liquid may not read files. The tags that would ({% include %}, {% render %},
// {% layout %}) are refused when the template is parsed, and the engines have no file system
// besides, so a tag added by a later liquidjs cannot reach the server's disk either.
const NO_FILES = {
  exists: async () => false, existsSync: () => false,
  readFile: async (file: string) => { throw new Error(`no file access: ${file}`); },
  readFileSync: (file: string) => { throw new Error(`no file access: ${file}`); },
  resolve: (_root: string, file: string) => file,
  dirname: () => '',
  sep: '/',
};

const FILE_TAG = {
  parse: (token: TagToken) => { throw new Error(`{% ${token.name} %} is not available: campaign templates cannot read files`); },
  render: () => undefined,
};

/** What one mail may still spend: shared by its subject, HTML and text, kept in each render's Context for the tags. */
export interface MailBudget {
  deadline: number;
  iterations: number;
  outputChars: number;
}

export const mailBudget = (): MailBudget =>
  ({ deadline: performance.now() + RENDER_LIMITS.mailMs, iterations: RENDER_LIMITS.iterations, outputChars: RENDER_LIMITS.outputChars });

const BUDGET = 'assent:budget';

function budgetOf(ctx: Context): MailBudget {
  // A render that did not come through renderBounded gets a budget of its own, not none.
  return ctx.getRegister<MailBudget | undefined>(BUDGET) ?? (ctx.setRegister(BUDGET, mailBudget()) as MailBudget);
}

/** liquidjs's own emitter, counting what is written against the mail's budget; with `pieces`, it keeps the template's runs apart. */
class BoundedOutput implements Emitter {
  buffer = '';
  readonly pieces: BodyPieces = [];

  constructor(readonly budget: MailBudget, private readonly options: { pieces: boolean } = { pieces: false }) {}

  write(value: unknown): void {
    const text = asText(value);
    this.spend(text.length);
    this.buffer += text;
  }

  writeRun(run: EncodedRun): void {
    this.spend(run.text.length);
    if (!this.options.pieces) {
      this.buffer += run.text;
      return;
    }
    if (this.buffer) this.pieces.push(this.buffer);
    this.buffer = '';
    this.pieces.push(run);
  }

  private spend(chars: number) {
    this.budget.outputChars -= Math.max(chars, RENDER_LIMITS.writeChars);
    if (this.budget.outputChars < 0) throw new Error(`output limit exceeded (${RENDER_LIMITS.outputChars} characters in one mail)`);
  }
}

/**
 * The templates with each top-level run of text (no Liquid in it) replaced by a node that
 * writes it as an EncodedRun: it renders the same text, and a mail built from the pieces
 * encodes the run's lines once per campaign, not per recipient. Runs inside a block ({% if %})
 * stay as they are.
 */
export function withEncodedRuns(templates: Template[]): Template[] {
  return templates.map((template) => {
    const text = (template as Template & { str?: unknown }).str;
    if (template.token.kind !== TokenKind.HTML || typeof text !== 'string' || !EncodedRun.fits(text)) return template;
    const run = new EncodedRun(text);
    return {
      token: template.token,
      render: (_ctx: Context, emitter: Emitter) => (emitter instanceof BoundedOutput ? emitter.writeRun(run) : emitter.write(run.text)),
    };
  });
}

/** As liquidjs writes a value (its Output tag has already turned drops into values). */
const asText = (value: unknown): string =>
  typeof value === 'string' ? value : value === null || value === undefined ? '' : Array.isArray(value) ? value.map(asText).join('') : String(value);

/** A node put first in a loop's body: each pass through the body spends one iteration. */
const iterationCharge = (token: Token): Template => ({
  token,
  render: (ctx: Context) => {
    const budget = budgetOf(ctx);
    budget.iterations -= 1;
    if (budget.iterations < 0) throw new Error(`loop limit exceeded (${RENDER_LIMITS.iterations} iterations in one mail)`);
  },
});

class BoundedFor extends ForTag {
  constructor(...args: ConstructorParameters<typeof ForTag>) {
    super(...args);
    this.templates.unshift(iterationCharge(this.token));
  }
}

class BoundedTablerow extends TablerowTag {
  constructor(...args: ConstructorParameters<typeof TablerowTag>) {
    super(...args);
    this.templates.unshift(iterationCharge(this.token));
  }
}

/** {% capture %} renders into an emitter of its own: bounded by the same budget. */
class BoundedCapture extends CaptureTag {
  override *render(ctx: Context): Generator<unknown, void, string> {
    const output = new BoundedOutput(budgetOf(ctx));
    yield this.liquid.renderer.renderTemplates(this.templates, ctx, output);
    ctx.bottom()[this.variable] = output.buffer;
  }
}

function campaignEngine(options: { outputEscape?: 'escape' }): Liquid {
  const { parseLimit, memoryLimit, mailMs } = RENDER_LIMITS;
  const engine = new Liquid({ ...options, fs: NO_FILES, root: [], strictFilters: true, parseLimit, memoryLimit, renderLimit: mailMs });
  for (const name of ['include', 'render', 'layout']) engine.registerTag(name, FILE_TAG);
  engine.registerTag('for', BoundedFor);
  engine.registerTag('tablerow', BoundedTablerow);
  engine.registerTag('capture', BoundedCapture);
  return engine;
}

/** HTML output: every value escaped, so a name like `<script>` arrives as text. */
export const htmlLiquid = campaignEngine({ outputEscape: 'escape' });
/** Plain-text output: nothing to escape. */
export const textLiquid = campaignEngine({});

/**
 * Renders parsed templates within what is left of the mail's budget, spending from it;
 * throws liquidjs's RenderError (with the line of the tag that went over) at a limit.
 */
export function renderBounded(engine: Liquid, templates: Template[], scope: object, budget: MailBudget): string {
  return render(engine, templates, scope, new BoundedOutput(budget)).buffer;
}

/** renderBounded, keeping the runs of templates made by withEncodedRuns apart. */
export function renderBoundedPieces(engine: Liquid, templates: Template[], scope: object, budget: MailBudget): BodyPieces {
  const output = render(engine, templates, scope, new BoundedOutput(budget, { pieces: true }));
  if (output.buffer) output.pieces.push(output.buffer);
  return output.pieces;
}

function render(engine: Liquid, templates: Template[], scope: object, output: BoundedOutput): BoundedOutput {
  const { budget } = output;
  const renderLimit = Math.max(0, budget.deadline - performance.now());
  const ctx = new Context(scope, engine.options, { sync: true, renderLimit }, { liquid: engine });
  ctx.setRegister(BUDGET, budget);
  toValueSync(engine.renderer.renderTemplates(templates, ctx, output));
  return output;
}

/** Whether a render error is the time limit alone: under load an honest template can meet it. */
export const isRenderTimeout = (error: unknown) => error instanceof Error && error.message.startsWith('template render limit exceeded');
