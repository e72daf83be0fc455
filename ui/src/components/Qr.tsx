// A QR code of a link, as SVG (for a phone to scan).

import qrcode from 'qrcode-generator';

export function Qr({ text }: { text: string }) {
  const code = qrcode(0, 'M');
  code.addData(text);
  code.make();
  const count = code.getModuleCount();
  const cells: string[] = [];
  for (let row = 0; row < count; row++) {
    for (let col = 0; col < count; col++) {
      if (code.isDark(row, col)) cells.push(`M${col + 4} ${row + 4}h1v1h-1z`);
    }
  }
  const size = count + 8;
  return (
    <svg class="qr" data-testid="qr" viewBox={`0 0 ${size} ${size}`} width="180" height="180" role="img" aria-label={`QR code of ${text}`}>
      <rect width={size} height={size} fill="#fff" />
      <path d={cells.join('')} fill="#000" />
    </svg>
  );
}
