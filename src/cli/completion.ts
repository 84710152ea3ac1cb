/**
 * `reuseport completion bash|zsh|fish`: a completion script generated from
 * the commander definitions themselves, so that a new flag or command is
 * completed without anyone remembering to add it here.
 */
import type { Command, Option } from 'commander';
import { UsageError } from '../errors.js';
import { openTerminal } from './terminal.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

/** What follows a flag: nothing, one of a few words, a file, or a free value. */
type FlagValue = { kind: 'none' } | { kind: 'choices'; words: string[] } | { kind: 'file' } | { kind: 'free' };

interface FlagSpec {
  long?: string;
  short?: string;
  description: string;
  value: FlagValue;
}

interface CommandSpec {
  /** Words after `reuseport`, e.g. ['scenario', 'run']; [] for the program. */
  path: string[];
  description: string;
  subcommands: string[];
  flags: FlagSpec[];
  /** Words a positional argument can be (scenario names); files are offered too when `files` is set. */
  operands: string[];
  files: boolean;
}

/** Flags whose value is a file path. */
const FILE_FLAGS = new Set(['--junit', '--html', '--markdown']);

export function completionScript(shell: string, program: Command, scenarioNames: string[]): string {
  if (!(SHELLS as readonly string[]).includes(shell)) {
    throw new UsageError(`no completion for "${shell}": choose one of ${SHELLS.join(', ')}`);
  }
  const specs = describe(program, [], scenarioNames);
  if (shell === 'fish') return fishScript(specs);
  return shell === 'zsh' ? zshScript(specs) : bashScript(specs);
}

function describe(command: Command, path: string[], scenarioNames: string[]): CommandSpec[] {
  const children = command.commands.filter((c) => !(c as Command & { _hidden?: boolean })._hidden);
  const takesScenarios = path.join(' ') === 'scenario run';
  const takesFiles = takesScenarios || path.join(' ') === 'reconcile';
  const own: CommandSpec = {
    path,
    description: command.description(),
    subcommands: children.map((c) => c.name()),
    flags: [...command.options.filter((o) => !o.hidden).map(flag), ...helpFlag(path)],
    operands: takesScenarios ? scenarioNames : path.join(' ') === 'completion' ? [...SHELLS] : [],
    files: takesFiles,
  };
  return [own, ...children.flatMap((child) => describe(child, [...path, child.name()], scenarioNames))];
}

function helpFlag(path: string[]): FlagSpec[] {
  return [
    {
      long: '--help',
      short: '-h',
      description: `help for ${['reuseport', ...path].join(' ')}`,
      value: { kind: 'none' },
    },
  ];
}

function flag(option: Option): FlagSpec {
  const takesValue = option.required || option.optional;
  // `--protocol <tcp|udp>`: the choices are spelled in the flag itself.
  const spelled = /<([\w-]+(?:\|[\w-]+)+)>/.exec(option.flags)?.[1]?.split('|');
  const choices = option.argChoices ?? spelled;
  const value: FlagValue = !takesValue
    ? { kind: 'none' }
    : choices
      ? { kind: 'choices', words: choices }
      : option.long && FILE_FLAGS.has(option.long)
        ? { kind: 'file' }
        : { kind: 'free' };
  return {
    ...(option.long ? { long: option.long } : {}),
    ...(option.short ? { short: option.short } : {}),
    description: option.description,
    value,
  };
}

function names(f: FlagSpec): string[] {
  return [f.short, f.long].filter((n): n is string => n !== undefined);
}

/** A fish single-quoted word: only \\ and \' are special inside. */
function fishQuoted(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

function bashQuoted(text: string): string {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

function bashFunction(specs: CommandSpec[]): string {
  const valueFlags = [...new Set(specs.flatMap((s) => s.flags.filter((f) => f.value.kind !== 'none').flatMap(names)))];
  const branches = specs.map((spec) => {
    const prevCases = spec.flags
      .filter((f) => f.value.kind !== 'none')
      .map((f) => {
        const pattern = names(f).join('|');
        if (f.value.kind === 'choices') {
          return `        ${pattern}) COMPREPLY=($(compgen -W ${bashQuoted(f.value.words.join(' '))} -- "$cur")); return ;;`;
        }
        if (f.value.kind === 'file') return `        ${pattern}) COMPREPLY=($(compgen -f -- "$cur")); return ;;`;
        return `        ${pattern}) return ;;`;
      });
    const words = [...spec.subcommands, ...spec.operands].join(' ');
    return [
      `    ${bashQuoted(spec.path.join(' '))})`,
      ...(prevCases.length > 0 ? ['      case "$prev" in', ...prevCases, '      esac'] : []),
      `      flags=${bashQuoted(spec.flags.flatMap(names).join(' '))}`,
      `      words=${bashQuoted(words)}`,
      `      files=${spec.files ? 1 : 0}`,
      '      ;;',
    ].join('\n');
  });
  const subcommandsOf = specs
    .filter((s) => s.subcommands.length > 0)
    .map((s) => `    ${bashQuoted(s.path.join(' '))}) subs=${bashQuoted(s.subcommands.join(' '))} ;;`);
  return `_reuseport() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local path="" subs word i flags="" words="" files=0
  # The command path so far: words that name a subcommand, skipping flags and their values.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case " ${valueFlags.join(' ')} " in
      *" $word "*) i=$((i + 1)); continue ;;
    esac
    [[ "$word" == -* ]] && continue
    subs=""
    case "$path" in
${subcommandsOf.join('\n')}
    esac
    if [[ " $subs " == *" $word "* ]]; then path="\${path:+$path }$word"; fi
  done
  case "$path" in
${branches.join('\n')}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    if [[ $files == 1 ]]; then COMPREPLY+=($(compgen -f -- "$cur")); fi
  fi
}`;
}

function bashScript(specs: CommandSpec[]): string {
  return `# bash completion for reuseport. Load it now:  source <(reuseport completion bash)
# or for every shell:  reuseport completion bash > ~/.local/share/bash-completion/completions/reuseport
${bashFunction(specs)}
complete -F _reuseport reuseport
`;
}

/** zsh runs the bash function through its bashcompinit layer, so both shells complete the same words. */
function zshScript(specs: CommandSpec[]): string {
  return `#compdef reuseport
# zsh completion for reuseport. Load it now:  source <(reuseport completion zsh)
# or save it as _reuseport in a folder of your $fpath.
autoload -U +X compinit && compinit
autoload -U +X bashcompinit && bashcompinit
${bashFunction(specs)}
complete -F _reuseport reuseport
`;
}

function fishScript(specs: CommandSpec[]): string {
  const lines = [
    '# fish completion for reuseport. Load it now:  reuseport completion fish | source',
    '# or for every shell:  reuseport completion fish > ~/.config/fish/completions/reuseport.fish',
    'complete -c reuseport -f',
  ];
  for (const spec of specs) {
    // Inside `a b`: both seen, and none of a's other subcommands' children yet.
    const condition =
      spec.path.length === 0
        ? '__fish_use_subcommand'
        : `${spec.path.map((p) => `__fish_seen_subcommand_from ${p}`).join('; and ')}${
            spec.subcommands.length > 0 ? `; and not __fish_seen_subcommand_from ${spec.subcommands.join(' ')}` : ''
          }`;
    const n = `-n ${fishQuoted(condition)}`;
    const childSpecs = specs.filter(
      (s) => s.path.length === spec.path.length + 1 && spec.path.every((p, i) => s.path[i] === p),
    );
    for (const child of childSpecs) {
      lines.push(
        `complete -c reuseport ${n} -a ${fishQuoted(child.path.at(-1) ?? '')} -d ${fishQuoted(child.description)}`,
      );
    }
    if (spec.operands.length > 0) lines.push(`complete -c reuseport ${n} -a ${fishQuoted(spec.operands.join(' '))}`);
    if (spec.files) lines.push(`complete -c reuseport ${n} -F`);
    for (const f of spec.flags) {
      const parts = ['complete -c reuseport', n];
      if (f.long) parts.push(`-l ${f.long.replace(/^--/, '')}`);
      if (f.short) parts.push(`-s ${f.short.replace(/^-/, '')}`);
      if (f.value.kind === 'choices') parts.push(`-x -a ${fishQuoted(f.value.words.join(' '))}`);
      else if (f.value.kind === 'file') parts.push('-r -F');
      else if (f.value.kind === 'free') parts.push('-x');
      parts.push(`-d ${fishQuoted(f.description)}`);
      lines.push(parts.join(' '));
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Prints the script for `shell`, with the shipped scenario names as of this install. */
export async function completionCommand(shell: string, program: Command): Promise<number> {
  const { listScenarioFiles, scenarioNameOf } = await import('../scenario/scenario-file.js');
  const { SCENARIOS_DIR } = await import('./scenario-command.js');
  const names = (await listScenarioFiles(SCENARIOS_DIR)).map(scenarioNameOf);
  const terminal = await openTerminal({ json: true });
  terminal.out(completionScript(shell, program, names).trimEnd());
  return 0;
}
