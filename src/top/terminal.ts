/**
 * The terminal, with plain ANSI sequences: the alternate screen, raw keys, full redraws, and restoring
 * all of it exactly once however the view ends.
 */
import type { Size } from './render.js';

const CSI_KEYS: Record<string, string> = {
  A: 'up', B: 'down', C: 'right', D: 'left', H: 'home', F: 'end',
  '1~': 'home', '7~': 'home', '4~': 'end', '8~': 'end', '5~': 'pageup', '6~': 'pagedown', '3~': 'delete',
};

/**
 * Splits what the terminal sent into keys: 'up', 'down', 'left', 'right', 'home', 'end', 'pageup',
 * 'pagedown', 'delete', 'enter', 'backspace', 'escape', 'ctrl-c', or the character typed. An escape
 * sequence cut off at the end (over ssh a key can arrive in two reads) is returned as `rest`, to be put
 * before the next input.
 */
export function decodeKeys(input: string): { keys: string[]; rest: string } {
  const keys: string[] = [];
  const chars = Array.from(input);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === '\x1b') {
      const next = chars[i + 1];
      if (next === undefined) return { keys, rest: '\x1b' };
      if (next === '[' || next === 'O') {
        // CSI or SS3: parameters, then one final letter or ~
        let j = i + 2;
        let params = '';
        while (j < chars.length && /[0-9;]/.test(chars[j])) params += chars[j++];
        if (j >= chars.length) return { keys, rest: chars.slice(i).join('') };
        const final = chars[j];
        const key = CSI_KEYS[final === '~' ? `${params.split(';')[0]}~` : final];
        if (key) keys.push(key);
        i = j;
        continue;
      }
      keys.push('escape');
      continue;
    }
    if (c === '\r' || c === '\n') keys.push('enter');
    else if (c === '\x7f' || c === '\b') keys.push('backspace');
    else if (c === '\x03') keys.push('ctrl-c');
    else if (c >= ' ') keys.push(c);
  }
  return { keys, rest: '' };
}

/** How long the start of an escape sequence waits for its end before it counts as the Esc key. */
const ESCAPE_WAIT_MS = 50;

export class Terminal {
  private active = false;
  private onData: ((chunk: string) => void) | null = null;
  private pending = '';
  private pendingTimer: NodeJS.Timeout | undefined;
  private onResize: (() => void) | null = null;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly input: NodeJS.ReadStream,
  ) {}

  get size(): Size {
    return { columns: this.out.columns || 80, rows: this.out.rows || 24 };
  }

  /** Alternate screen, no cursor, raw keys (Ctrl-C arrives as a key). */
  enter(onKeys: (keys: string[]) => void, onResize: () => void): void {
    this.active = true;
    this.out.write('\x1b[?1049h\x1b[?25l\x1b[2J');
    this.input.setRawMode(true);
    this.input.setEncoding('utf8');
    this.onData = (chunk: string) => {
      clearTimeout(this.pendingTimer);
      const { keys, rest } = decodeKeys(this.pending + chunk);
      this.pending = rest;
      if (rest !== '') {
        this.pendingTimer = setTimeout(() => {
          this.pending = '';
          onKeys(['escape']);
        }, ESCAPE_WAIT_MS);
      }
      if (keys.length > 0) onKeys(keys);
    };
    this.onResize = onResize;
    this.input.on('data', this.onData);
    this.input.resume();
    this.out.on('resize', onResize);
  }

  /** Draws a whole frame, each line at its own row (nothing depends on where the terminal wraps). */
  draw(lines: readonly string[]): void {
    if (!this.active) return;
    this.out.write(lines.map((line, k) => `\x1b[${k + 1};1H${line}`).join('') + '\x1b[0m');
  }

  /** Back to the screen and the modes the view started from; does nothing the second time. */
  restore(): void {
    if (!this.active) return;
    this.active = false;
    clearTimeout(this.pendingTimer);
    this.input.setRawMode(false);
    this.input.off('data', this.onData!);
    this.input.pause();
    this.out.off('resize', this.onResize!);
    this.out.write('\x1b[0m\x1b[?25h\x1b[?1049l');
  }
}
