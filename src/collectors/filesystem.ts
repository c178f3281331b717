/**
 * filesystem/<mount>/: statfs() of every mounted filesystem, as df shows it, in bytes and inodes. The mounts
 * are those of <procRoot>/1/mounts (the host's namespace; <procRoot>/mounts when PID 1's is hidden), as
 * node_exporter reads them; pseudo filesystems (proc, sysfs, cgroup, …) and /dev, /proc, /sys are left out
 * by default with node_exporter's patterns (filters.ts), and statsfs mounts always (see the refresher).
 * A source is named after its mount point with '/' as '-' ("-" is /, "boot-efi" is /boot/efi; one too long
 * for a name is shortened and hashed), and carries device, fstype and mountpoint as labels. A mount point
 * listed twice (mounted over) keeps its first entry.
 *
 *   size, free, avail   bytes: f_blocks, f_bfree (root's reserve included), f_bavail (what users may use) × f_bsize
 *   files, files_free   inodes: f_files, f_ffree
 *   readonly            1 when mounted read-only ("ro" in the mount options)
 *   device_error        1 when statfs() fails (the other values then fail too, and the scrape says so)
 *
 * statfs() is called at most once per mount per freshness window; the mount list is re-read under the same
 * rule. It is synchronous: a hung network mount holds the daemon (node_exporter times such a mount out).
 */
import { createHash } from 'node:crypto';
import { statfsSync, type BigIntStatsFs } from 'node:fs';
import { join } from 'node:path';
import { gaugeType, LiveValues, Schema, Source, isValidName, type ValueSpec } from '../model/index.js';
import { KernelFile, kernelPath, readKernelFile, syncSubordinates, throttle, type Collector, type CollectorOptions } from './common.js';
import { NODE_EXPORTER_FILTERS, shown } from './filters.js';

export interface Mount {
  device: string;
  mountpoint: string;
  fstype: string;
  readonly: boolean;
}

/** /proc/mounts lines: "device mountpoint fstype options 0 0", with \ooo escapes for spaces and the like. */
export function parseMounts(text: string): Mount[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 4) continue;
    mounts.push({ device: unescape(f[0]), mountpoint: unescape(f[1]), fstype: f[2], readonly: f[3].split(',').includes('ro') });
  }
  return mounts;
}

const gauge = (name: string, unit: string, description: string, exposed: string, help: string): ValueSpec => ({
  name,
  type: gaugeType,
  floating: true,
  unit,
  description,
  expose: { name: exposed, type: 'gauge', help },
});

const filesystemSchema = new Schema([
  gauge('size', 'bytes', 'size of the filesystem (f_blocks × f_bsize)', 'node_filesystem_size_bytes', 'Filesystem size in bytes.'),
  gauge('free', 'bytes', 'free space, the root reserve included (f_bfree × f_bsize)', 'node_filesystem_free_bytes', 'Filesystem free space in bytes.'),
  gauge('avail', 'bytes', 'space available to unprivileged users (f_bavail × f_bsize)', 'node_filesystem_avail_bytes', 'Filesystem space available to non-root users in bytes.'),
  gauge('files', 'inodes', 'inodes (f_files)', 'node_filesystem_files', 'Filesystem total file nodes.'),
  gauge('files_free', 'inodes', 'free inodes (f_ffree)', 'node_filesystem_files_free', 'Filesystem total free file nodes.'),
  gauge('readonly', 'flag', '1 when mounted read-only', 'node_filesystem_readonly', 'Filesystem read-only status.'),
  gauge('device_error', 'flag', '1 when statfs() of the mount point fails', 'node_filesystem_device_error', 'Whether an error occurred while getting statistics for the given device.'),
]);


/**
 * "/" -> "-", "/boot/efi" -> "boot-efi". A name the model cannot take (longer than 99 characters, as
 * Kubernetes volume mounts are, or with control characters) is shortened and made unique with a hash of
 * the mount point; the labels keep the mount point whole. Null only if even that fails.
 */
function sourceName(mountpoint: string): string | null {
  const name = mountpoint === '/' ? '-' : mountpoint.replace(/^\/+/, '').replaceAll('/', '-');
  if (isValidName(name)) return name;
  const hash = createHash('sha256').update(mountpoint, 'utf8').digest('hex').slice(0, 16);
  const short = `${name.replace(/[\u0000-\u001f\u007f]/g, '_').slice(0, 80)}~${hash}`;
  return isValidName(short) ? short : null;
}

export const filesystemCollector: Collector = {
  name: 'filesystem',
  description: 'mounted filesystems: size, free and available bytes, inodes (statfs), pseudo filesystems left out',
  create(options: CollectorOptions): Source {
    const mountpoints = options.filters.mountpoints ?? NODE_EXPORTER_FILTERS.mountpoints;
    const fstypes = options.filters.fstypes ?? NODE_EXPORTER_FILTERS.fstypes;
    let mountsPath = kernelPath(options.procRoot, '1', 'mounts');
    try {
      readKernelFile(mountsPath);
    } catch {
      mountsPath = kernelPath(options.procRoot, 'mounts'); // PID 1's hidden (hidepid)
    }
    const mountsFile = new KernelFile(mountsPath, parseMounts, options);
    const top = new Source('filesystem');
    let wanted = new Map<string, Mount>();

    const makeSource = (name: string): Source => {
      const mount = wanted.get(name)!;
      const src = new Source(name, { expose: { labels: { device: mount.device, fstype: mount.fstype, mountpoint: mount.mountpoint } } });
      let at = -Infinity;
      let result: BigIntStatsFs | Error | null = null;
      const stats = () => {
        const now = options.now();
        if (result === null || now - at >= options.freshnessMs) {
          try {
            result = statfsSync(join(options.rootFs, mount.mountpoint), { bigint: true });
          } catch (err) {
            result = err as Error;
          }
          at = now;
        }
        return result;
      };
      src.addValues(filesystemSchema, {
        base: new LiveValues((field) => {
          const s = stats();
          if (field === 'device_error') return s instanceof Error ? 1 : 0;
          if (field === 'readonly') return mount.readonly ? 1 : 0;
          if (s instanceof Error) throw s; // EIO for a reader, a left-out value (and success 0) for a scrape
          switch (field) {
            case 'size':
              return s.blocks * s.bsize;
            case 'free':
              return s.bfree * s.bsize;
            case 'avail':
              return s.bavail * s.bsize;
            case 'files':
              return s.files;
            default:
              return s.ffree;
          }
        }),
      });
      return src;
    };

    top.setRefresher(
      throttle(options, () => {
        const next = new Map<string, Mount>();
        for (const mount of mountsFile.get()) {
          if (!shown(mountpoints, mount.mountpoint) || !shown(fstypes, mount.fstype)) continue;
          // statfs() of a statsfs mount, ours included, is answered by a daemon's event loop: never from
          // inside one (a synchronous call on our own mount would wait for itself)
          if (mount.fstype === 'fuse.statsfs') continue;
          const name = sourceName(mount.mountpoint);
          // a mount point mounted over keeps its first entry, as node_exporter's label set would repeat
          if (name !== null && !next.has(name)) next.set(name, mount);
        }
        // a mount replaced by another at the same place is a new source (new labels)
        for (const sub of top.subordinates) {
          const old = wanted.get(sub.name);
          const now = next.get(sub.name);
          if (old && now && (old.device !== now.device || old.fstype !== now.fstype)) top.removeSubordinate(sub);
        }
        wanted = next;
        syncSubordinates(top, next.keys(), makeSource);
      }),
    );
    return top;
  },
};
