/** The few text styles reports use; the CLI passes chalk's, tests pass `plainStyle`. */
export interface Style {
  bold(text: string): string;
  dim(text: string): string;
  green(text: string): string;
  red(text: string): string;
  yellow(text: string): string;
  cyan(text: string): string;
}

const same = (text: string) => text;
export const plainStyle: Style = { bold: same, dim: same, green: same, red: same, yellow: same, cyan: same };
