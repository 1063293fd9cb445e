// pidusage ships no types; this covers only the calls the sampler benchmark makes.
declare module 'pidusage' {
  export interface Status {
    cpu: number;
    memory: number;
    ppid: number;
    pid: number;
    ctime: number;
    elapsed: number;
    timestamp: number;
  }
  interface Pidusage {
    (pids: number[]): Promise<Record<string, Status>>;
    (pid: number): Promise<Status>;
    clear(): void;
  }
  const pidusage: Pidusage;
  export default pidusage;
}
