/** One call the fake bank received: when it arrived, from whom, for which account, and what it answered. */
export interface BankCall {
  at: number;
  client: string;
  account: string | null;
  status: number;
}

export interface FakeBank {
  url: string;
  calls: BankCall[];
  /** While on, every call is answered 500. */
  fail(on: boolean): void;
  /** The next call is answered 429 with this Retry-After, in seconds. */
  throttleNext(seconds: number): void;
  close(): Promise<void>;
}

export function startFakeBank(options?: { port?: number; limit?: number }): Promise<FakeBank>;
