import { typeOfCategory, type Category, type Severity } from '../bounces/categories.js';
import type { Classification } from '../bounces/classifier.js';

/**
 * A failure that no remote SMTP reply describes (DNS, a refused connection, a timeout), classified
 * by us: the classifier reads what remote servers say, this names what we saw.
 */
export function localFailure(
  severity: Severity,
  category: Category,
  text: string,
  code: number | null = null,
  enhancedCode: string | null = null,
): Classification {
  return { severity, type: typeOfCategory(category), category, code, enhancedCode, text };
}
