/** The few ELF header fields the release checks on a binary it cannot run (the arm64 build). */

/** What an ELF header says about a file. */
export interface ElfHeader {
  readonly bits: 32 | 64;
  readonly littleEndian: boolean;
  /** e_type: 2 = executable, 3 = shared object (position-independent executables are 3). */
  readonly type: number;
  /** e_machine: 62 = x86-64, 183 = AArch64. */
  readonly machine: number;
}

/** Parse the first bytes of a file as an ELF header; undefined when it is not ELF. */
export function parseElfHeader(head: Uint8Array): ElfHeader | undefined {
  if (head.length < 20 || head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46) return undefined;
  const cls = head[4];
  const data = head[5];
  if ((cls !== 1 && cls !== 2) || (data !== 1 && data !== 2)) return undefined;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const le = data === 1;
  return { bits: cls === 2 ? 64 : 32, littleEndian: le, type: view.getUint16(16, le), machine: view.getUint16(18, le) };
}
