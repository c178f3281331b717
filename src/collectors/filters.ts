/**
 * Include/exclude patterns for what the host collectors show: block devices, network interfaces, mount
 * points, filesystem types and cgroups, as node_exporter's --collector.<x>.<thing>-include/-exclude flags.
 * A name is shown when it matches `include` (if given) and does not match `exclude` (if given).
 *
 * The library shows everything unless told otherwise (filesystems excepted: pseudo filesystems are left
 * out by default, as node_exporter does); `statsfs mount` applies node_exporter 1.5.0's defaults.
 */
export interface Filter {
  include?: RegExp;
  exclude?: RegExp;
}

export interface CollectorFilters {
  /** Block devices and partitions, by kernel name (sda, sda1, nvme0n1p2, loop0). */
  devices?: Filter;
  /** Network interfaces (eth0, lo). */
  interfaces?: Filter;
  /** Mount points of the filesystem collector (/, /boot). */
  mountpoints?: Filter;
  /** Filesystem types of the filesystem collector (ext4, tmpfs). */
  fstypes?: Filter;
  /** cgroups, by path below the root ("/", "/system.slice/foo.service"). */
  cgroups?: Filter;
}

export type FilterKind = keyof CollectorFilters;
const FILTER_KINDS: readonly FilterKind[] = ['devices', 'interfaces', 'mountpoints', 'fstypes', 'cgroups'];

/** node_exporter 1.5.0's compiled-in defaults (upstream; Debian's build also leaves out /run, /mnt, /media and lo). */
export const NODE_EXPORTER_FILTERS: Readonly<CollectorFilters> = Object.freeze({
  devices: { exclude: /^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$/ },
  mountpoints: { exclude: /^\/(dev|proc|run\/credentials\/.+|sys|var\/lib\/docker\/.+|var\/lib\/containers\/storage\/.+)($|\/)/ },
  fstypes: {
    exclude:
      /^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$/,
  },
});

export function shown(filter: Filter | undefined, name: string): boolean {
  if (filter === undefined) return true;
  if (filter.include !== undefined && !filter.include.test(name)) return false;
  return filter.exclude === undefined || !filter.exclude.test(name);
}

/**
 * "devices=^sd" for --collector-include / --collector-exclude: adds the pattern to `filters` (a later one
 * for the same kind replaces an earlier one). Throws a message that says what is expected.
 */
export function addFilter(filters: CollectorFilters, which: 'include' | 'exclude', text: string): CollectorFilters {
  const eq = text.indexOf('=');
  const kind = text.slice(0, eq) as FilterKind;
  if (eq < 0 || !FILTER_KINDS.includes(kind)) throw new Error(`expected <kind>=<regex>, kind one of ${FILTER_KINDS.join(', ')} (e.g. devices=^loop)`);
  let re: RegExp;
  try {
    re = new RegExp(text.slice(eq + 1));
  } catch (err) {
    throw new Error(`${kind}: ${(err as Error).message}`);
  }
  return { ...filters, [kind]: { ...filters[kind], [which]: re } };
}

/** node_exporter's defaults with the command line's patterns added ("devices=^sd", in order; a later one replaces). */
export function filtersFrom(include: readonly string[], exclude: readonly string[]): CollectorFilters {
  let filters: CollectorFilters = { ...NODE_EXPORTER_FILTERS };
  for (const text of include) filters = addFilter(filters, 'include', text);
  for (const text of exclude) filters = addFilter(filters, 'exclude', text);
  return filters;
}
