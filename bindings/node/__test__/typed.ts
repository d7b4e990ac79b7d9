// Compiled with `tsc --noEmit` (never run): the declarations in index.d.ts describe the
// package as the web team uses it. Lines marked @ts-expect-error must stay type errors.
import {
  Ledger,
  type ErrorCode,
  type LedgerError,
  type Line,
  type Reservation,
  type Shortfall,
  type SkuStock,
  type StockLevel,
} from '../index';

export async function usage(): Promise<void> {
  const ledger: Ledger = await Ledger.open('data/ledger', { durability: 'sync' });
  const set: StockLevel = await ledger.setStock('A1', 'kol', 100);
  const adjusted: StockLevel = await ledger.adjustStock('A1', 'kol', -3, { adjustmentId: 'adj-1', reason: 'damaged' });
  const now: StockLevel = ledger.stock('A1', 'kol');
  const figures: number = set.onHand + adjusted.reserved + now.available;

  const lines: Line[] = [{ sku: 'A1', warehouse: 'kol', qty: 2 }];
  const r: Reservation = await ledger.reserve('o-1', lines, { ttlSeconds: 900 });
  const created: Date = r.createdAt;
  const expires: number = r.expiresAt.getTime();
  const status: 'reserved' | 'paid' | 'released' | 'expired' = r.status;
  const paid: Reservation = await ledger.commit('o-1');
  const released: Reservation = await ledger.release('o-2');
  const maybe: Reservation | null = ledger.reservation('o-1');
  const expired: string[] = await ledger.expireDue();
  const seq: number = await ledger.checkpoint();
  const sku: SkuStock | null = ledger.skuStock('A1');
  const mode: 'sync' | 'async' | 'none' = ledger.durability;
  await ledger.close();

  try {
    await ledger.reserve('o-3', [{ sku: 'A1', warehouse: 'kol', qty: 1 }]);
  } catch (e) {
    const err = e as LedgerError;
    const code: ErrorCode = err.code;
    const short: Shortfall[] | undefined = err.shortfalls;
    if (code === 'INSUFFICIENT_STOCK' && short) {
      const first: number = short[0].requested - short[0].available;
      void first;
    }
  }

  const many: Array<boolean | LedgerError> = await ledger.reserveMany(
    [{ orderId: 'o-9', lines: [{ sku: 'A1', warehouse: 'kol', qty: 1 }] }],
    { ttlSeconds: 60 },
  );
  for (const r of many) if (r !== true && r !== false) void r.code;
  // @ts-expect-error an order needs its lines
  await ledger.reserveMany([{ orderId: 'o-10' }]);

  // @ts-expect-error durability is one of three strings
  await Ledger.open('x', { durability: 'fast' });
  // @ts-expect-error qty is a number
  await ledger.reserve('o-4', [{ sku: 'A1', warehouse: 'kol', qty: '1' }]);
  // @ts-expect-error adjustStock needs its adjustmentId
  await ledger.adjustStock('A1', 'kol', 1);
  // @ts-expect-error stock() is synchronous
  await ledger.stock('A1', 'kol').then(() => 0);

  void [figures, created, expires, status, paid, released, maybe, expired, seq, sku, mode];
}
